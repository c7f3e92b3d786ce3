//! The synthetic image-caption data set the demo model learns from: simple shapes in six colours,
//! of varying size, position and rotation, on varying backgrounds, with captions from varied
//! templates. Everything follows from a seed.

use std::f64::consts::PI;

use crate::preprocess::Rgb8;
use crate::rng::SplitMix64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Star,
}

pub const SHAPES: [Shape; 4] = [Shape::Circle, Shape::Square, Shape::Triangle, Shape::Star];

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Star => "star",
        }
    }

    /// Whether a point, in the shape's own frame (unit radius, unrotated), is inside it.
    fn contains(self, x: f64, y: f64) -> bool {
        match self {
            Shape::Circle => x * x + y * y <= 1.0,
            Shape::Square => x.abs() <= 0.8 && y.abs() <= 0.8,
            Shape::Triangle => inside_polygon(&regular_polygon(3, 1.0, 1.0), x, y),
            Shape::Star => inside_polygon(&regular_polygon(5, 1.0, 0.45), x, y),
        }
    }
}

/// Vertices of a regular polygon (`inner` < `outer`: a star, alternating radii).
fn regular_polygon(points: usize, outer: f64, inner: f64) -> Vec<(f64, f64)> {
    let (count, step) = if inner < outer {
        (points * 2, PI / points as f64)
    } else {
        (points, 2.0 * PI / points as f64)
    };
    (0..count)
        .map(|i| {
            let r = if i % 2 == 1 && inner < outer {
                inner
            } else {
                outer
            };
            let a = -PI / 2.0 + i as f64 * step;
            (r * a.cos(), r * a.sin())
        })
        .collect()
}

/// Even-odd rule.
fn inside_polygon(vertices: &[(f64, f64)], x: f64, y: f64) -> bool {
    let mut inside = false;
    let mut j = vertices.len() - 1;
    for i in 0..vertices.len() {
        let ((xi, yi), (xj, yj)) = (vertices[i], vertices[j]);
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// Colour names with well separated hues.
pub const COLOURS: [(&str, [u8; 3]); 6] = [
    ("red", [220, 30, 35]),
    ("green", [35, 170, 60]),
    ("blue", [35, 70, 220]),
    ("yellow", [240, 215, 35]),
    ("purple", [140, 45, 185]),
    ("orange", [245, 135, 25]),
];

/// Backgrounds: neutral, so that a colour word always means the shape.
pub const BACKGROUNDS: [(&str, [u8; 3]); 5] = [
    ("white", [245, 245, 245]),
    ("light grey", [200, 200, 200]),
    ("grey", [128, 128, 128]),
    ("dark grey", [64, 64, 64]),
    ("black", [15, 15, 15]),
];

const SIZES: [(&str, f64, f64); 3] = [
    ("small", 0.14, 0.22),
    ("medium", 0.22, 0.32),
    ("large", 0.32, 0.45),
];

/// One picture's content.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub shape: Shape,
    pub colour: usize,
    pub background: usize,
    pub size: usize,
    /// Radius, centre and rotation as fractions of the image side / radians.
    radius: f64,
    centre: (f64, f64),
    rotation: f64,
    /// Per-scene jitter of the colours, so that a class is a range, not one value.
    colour_jitter: [i16; 3],
    background_jitter: [i16; 3],
}

impl Scene {
    pub fn random(rng: &mut SplitMix64) -> Self {
        let size = rng.below(SIZES.len());
        let (_, low, high) = SIZES[size];
        let radius = rng.range(low, high);
        let margin = radius * 0.9;
        let mut jitter = |amount: f64| [0; 3].map(|_: i16| rng.range(-amount, amount) as i16);
        let colour_jitter = jitter(18.0);
        let background_jitter = jitter(12.0);
        Self {
            shape: *rng.pick(&SHAPES),
            colour: rng.below(COLOURS.len()),
            background: rng.below(BACKGROUNDS.len()),
            size,
            radius,
            centre: (
                rng.range(margin, 1.0 - margin),
                rng.range(margin, 1.0 - margin),
            ),
            rotation: rng.range(0.0, 2.0 * PI),
            colour_jitter,
            background_jitter,
        }
    }

    /// The class a zero-shot classifier should name: colour x shape.
    pub fn class(&self) -> usize {
        self.colour * SHAPES.len() + SHAPES.iter().position(|s| *s == self.shape).unwrap_or(0)
    }

    pub fn colour_name(&self) -> &'static str {
        COLOURS[self.colour].0
    }

    /// Renders at `side` x `side` pixels with 4x4 supersampling at the edges.
    pub fn render(&self, side: usize) -> Rgb8 {
        let jittered = |rgb: [u8; 3], jitter: [i16; 3]| {
            [0, 1, 2].map(|c| (i16::from(rgb[c]) + jitter[c]).clamp(0, 255) as f64)
        };
        let fg = jittered(COLOURS[self.colour].1, self.colour_jitter);
        let bg = jittered(BACKGROUNDS[self.background].1, self.background_jitter);
        let (sin, cos) = (-self.rotation).sin_cos();
        let scale = self.radius * side as f64;
        let (cx, cy) = (self.centre.0 * side as f64, self.centre.1 * side as f64);
        let inside = |px: f64, py: f64| {
            let (dx, dy) = ((px - cx) / scale, (py - cy) / scale);
            self.shape
                .contains(dx * cos - dy * sin, dx * sin + dy * cos)
        };
        const SUB: usize = 4;
        let mut data = Vec::with_capacity(side * side * 3);
        // Every shape lies within its unit circle: pixels clear of it are background, untested.
        let reach = scale + 1.0;
        for y in 0..side {
            for x in 0..side {
                let (dx, dy) = (x as f64 + 0.5 - cx, y as f64 + 0.5 - cy);
                if dx * dx + dy * dy > reach * reach {
                    data.extend(bg.map(|v| v.round() as u8));
                    continue;
                }
                let hits = (0..SUB * SUB)
                    .filter(|i| {
                        let sx = x as f64 + (i % SUB) as f64 / SUB as f64 + 0.5 / SUB as f64;
                        let sy = y as f64 + (i / SUB) as f64 / SUB as f64 + 0.5 / SUB as f64;
                        inside(sx, sy)
                    })
                    .count();
                let alpha = hits as f64 / (SUB * SUB) as f64;
                data.extend((0..3).map(|c| (fg[c] * alpha + bg[c] * (1.0 - alpha)).round() as u8));
            }
        }
        Rgb8 {
            width: side,
            height: side,
            data,
        }
    }

    /// A caption in one of several phrasings; every one names the colour and the shape.
    pub fn caption(&self, rng: &mut SplitMix64) -> String {
        let (colour, shape) = (self.colour_name(), self.shape.name());
        let (size, background) = (SIZES[self.size].0, BACKGROUNDS[self.background].0);
        match rng.below(8) {
            0 => format!("a photo of a {colour} {shape}."),
            1 => format!("a {size} {colour} {shape}"),
            2 => format!("a {colour} {shape} on a {background} background"),
            3 => format!("a picture of a {size} {colour} {shape} on {background}"),
            4 => format!("{colour} {shape}"),
            5 => format!("there is a {colour} {shape} in the image"),
            6 => format!("a drawing of a {shape} coloured {colour}"),
            _ => format!("a {background} background with a {size} {colour} {shape}"),
        }
    }
}

/// The zero-shot label of each class, in `Scene::class` order.
pub fn class_labels() -> Vec<String> {
    COLOURS
        .iter()
        .flat_map(|(colour, _)| SHAPES.iter().map(move |s| format!("{colour} {}", s.name())))
        .collect()
}

/// `count` (at most 20,000) distinct labels in the demo model's world ("small red star sticker"),
/// for large-vocabulary tests and benchmarks.
pub fn label_vocabulary(count: usize) -> Vec<String> {
    const COLOURS: [&str; 10] = [
        "red", "green", "blue", "yellow", "purple", "orange", "grey", "white", "black", "pink",
    ];
    const SHAPES: [&str; 10] = [
        "circle", "square", "triangle", "star", "ring", "cross", "heart", "arrow", "moon", "drop",
    ];
    const SIZES: [&str; 5] = ["tiny", "small", "medium", "large", "huge"];
    const THINGS: [&str; 40] = [
        "sticker", "stamp", "logo", "sign", "badge", "tile", "button", "flag", "icon", "patch",
        "card", "poster", "cookie", "balloon", "kite", "coin", "gem", "lamp", "mask", "toy", "box",
        "cup", "hat", "sock", "shoe", "ball", "bead", "bell", "book", "bowl", "brick", "candle",
        "chair", "clock", "cloud", "comb", "crown", "drum", "egg", "fan",
    ];
    THINGS
        .iter()
        .flat_map(|thing| {
            SIZES.iter().flat_map(move |size| {
                COLOURS.iter().flat_map(move |colour| {
                    SHAPES
                        .iter()
                        .map(move |shape| format!("{size} {colour} {shape} {thing}"))
                })
            })
        })
        .take(count)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes_and_captions_follow_from_the_seed() {
        let make = |seed| {
            let mut rng = SplitMix64::new(seed);
            let scene = Scene::random(&mut rng);
            (scene.render(32), scene.caption(&mut rng))
        };
        assert_eq!(make(3), make(3));
        assert_ne!(make(3).0, make(4).0);
    }

    #[test]
    fn the_shape_is_drawn_in_its_colour_over_the_background() {
        let mut rng = SplitMix64::new(1);
        for _ in 0..50 {
            let scene = Scene::random(&mut rng);
            let img = scene.render(64);
            let fg = COLOURS[scene.colour].1;
            let near = |p: &[u8], c: [u8; 3]| {
                (0..3).all(|i| (i32::from(p[i]) - i32::from(c[i])).abs() <= 20)
            };
            let pixels: Vec<&[u8]> = img.data.chunks(3).collect();
            let shape_pixels = pixels.iter().filter(|p| near(p, fg)).count();
            assert!(
                shape_pixels > 64 * 64 / 50,
                "{scene:?}: only {shape_pixels} shape pixels"
            );
            assert!(
                shape_pixels < 64 * 64 * 3 / 4,
                "{scene:?}: {shape_pixels} shape pixels"
            );
        }
    }

    #[test]
    fn every_class_has_a_label_and_classes_cover_colour_times_shape() {
        let labels = class_labels();
        assert_eq!(labels.len(), COLOURS.len() * SHAPES.len());
        let mut rng = SplitMix64::new(5);
        for _ in 0..100 {
            let scene = Scene::random(&mut rng);
            let label = &labels[scene.class()];
            assert!(label.contains(scene.colour_name()) && label.contains(scene.shape.name()));
        }
    }
}
