//! Clustered unit vectors shaped like CLIP embeddings, and their exact neighbours: the data of
//! the index and collection-store benchmarks, so that their recall figures read together.

use clipd::ann::dot;
use clipd::rng::SplitMix64;

/// Mean points per cluster: ~1,000 clusters at 100,000 points.
const CLUSTER_SIZE: usize = 100;

/// Standard normal samples (Box-Muller), both of each pair used.
struct Gaussian {
    rng: SplitMix64,
    spare: Option<f64>,
}

impl Gaussian {
    fn new(seed: u64) -> Self {
        Self {
            rng: SplitMix64::new(seed),
            spare: None,
        }
    }

    fn next(&mut self) -> f64 {
        if let Some(x) = self.spare.take() {
            return x;
        }
        // 1 - unit() is in (0, 1], so the logarithm is finite.
        let radius = (-2.0 * (1.0 - self.rng.unit()).ln()).sqrt();
        let angle = std::f64::consts::TAU * self.rng.unit();
        self.spare = Some(radius * angle.sin());
        radius * angle.cos()
    }
}

fn normalise(v: &mut [f32]) {
    let norm = dot(v, v).sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
}

/// Length of the direction every vector shares, next to unit-length cluster centres.
const MEAN_NORM: f64 = 1.0;
/// Length of a point's noise around its centre.
const NOISE_NORM: f64 = 1.5;

/// Unit vectors around random centres, shaped like CLIP embeddings rather than like either uniform
/// noise on the sphere (which no model produces and no index handles well) or tight, separate
/// blobs (which any index handles trivially once it reaches the right blob).
///
/// A point is normalise(mean + centre + noise): a direction shared by all (length 1), one of
/// `count / 100` random unit centres, and Gaussian noise of length about 1.5 whose variance along
/// axis i falls as 1 / (i + 1). The shared direction gives random pairs a cosine of about 0.24, the
/// cone that CLIP embeddings sit in; the power-law spectrum, like the principal components of CLIP
/// embeddings, gives the noise an effective dimension (participation ratio) of about 28 of 512,
/// near the intrinsic dimension reported for them; and noise longer than the centres makes
/// clusters overlap, so that a query's neighbours straddle several. Calibrated with hnswlib itself
/// (m 24, ef_construction 200, 100,000 points): recall@10 about 0.74 at ef_search 16, 0.98 at 64
/// and 0.997 at 128, the shape of published curves on real CLIP embeddings. With noise of length 1
/// recall was 1.0 from ef_search 64; isotropic noise made no harder a problem.
pub struct Clusters {
    dim: usize,
    mean: Vec<f32>,
    centres: Vec<f32>,
    noise_scale: Vec<f64>,
}

impl Clusters {
    pub fn new(count: usize, dim: usize, seed: u64) -> Self {
        let clusters = count.div_ceil(CLUSTER_SIZE);
        let mut gaussian = Gaussian::new(seed);
        let mut mean: Vec<f32> = (0..dim).map(|_| gaussian.next() as f32).collect();
        normalise(&mut mean);
        mean.iter_mut().for_each(|x| *x *= MEAN_NORM as f32);
        let mut centres: Vec<f32> = (0..clusters * dim)
            .map(|_| gaussian.next() as f32)
            .collect();
        centres.chunks_exact_mut(dim).for_each(normalise);
        let harmonic: f64 = (1..=dim).map(|i| 1.0 / i as f64).sum();
        let noise_scale = (1..=dim)
            .map(|i| NOISE_NORM * (1.0 / (i as f64 * harmonic)).sqrt())
            .collect();
        Self {
            dim,
            mean,
            centres,
            noise_scale,
        }
    }

    /// `count` points, each around a centre picked at random.
    pub fn sample(&self, count: usize, seed: u64) -> Vec<f32> {
        let mut gaussian = Gaussian::new(seed);
        let mut pick = SplitMix64::new(seed ^ 0x5EED);
        let clusters = self.centres.len() / self.dim;
        let mut out = Vec::with_capacity(count * self.dim);
        for _ in 0..count {
            let c = pick.below(clusters);
            let centre = &self.centres[c * self.dim..(c + 1) * self.dim];
            let start = out.len();
            out.extend(
                self.mean
                    .iter()
                    .zip(centre)
                    .zip(&self.noise_scale)
                    .map(|((&m, &x), &s)| m + x + (s * gaussian.next()) as f32),
            );
            normalise(&mut out[start..]);
        }
        out
    }
}

/// The exact `k` nearest rows of `base` to each query, best first, on `threads` threads.
pub fn exact_neighbours(
    base: &[f32],
    queries: &[f32],
    dim: usize,
    k: usize,
    threads: usize,
) -> Vec<Vec<u32>> {
    // Blocks of base rows small enough to stay in L2 while every query of a thread passes over
    // them: one pass over the base per thread instead of one per query.
    const BLOCK_ROWS: usize = 128;
    let query_rows: Vec<&[f32]> = queries.chunks_exact(dim).collect();
    let per_thread = query_rows.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = query_rows
            .chunks(per_thread)
            .map(|mine| {
                scope.spawn(move || {
                    let mut best: Vec<Vec<(f32, u32)>> =
                        vec![Vec::with_capacity(k + 1); mine.len()];
                    for (block_index, block) in base.chunks(BLOCK_ROWS * dim).enumerate() {
                        let first = block_index * BLOCK_ROWS;
                        for (query, best) in mine.iter().zip(&mut best) {
                            for (offset, row) in block.chunks_exact(dim).enumerate() {
                                let similarity = dot(query, row);
                                if best.len() == k && similarity <= best[k - 1].0 {
                                    continue;
                                }
                                let at = best.partition_point(|&(s, _)| s >= similarity);
                                best.insert(at, (similarity, (first + offset) as u32));
                                best.truncate(k);
                            }
                        }
                    }
                    best.into_iter()
                        .map(|b| b.into_iter().map(|(_, id)| id).collect())
                        .collect::<Vec<Vec<u32>>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a brute-force thread panicked"))
            .collect()
    })
}
