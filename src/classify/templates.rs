//! Prompt templates: how a label becomes the texts whose embeddings stand for it.

/// What `{}` in a template is replaced with.
pub const PLACEHOLDER: &str = "{}";

/// One prompt, CLIP's own default for zero-shot classification.
pub const DEFAULT: [&str; 1] = ["a photo of a {}."];

/// The 80 prompts CLIP's authors ensembled for ImageNet (the CLIP repository's
/// notebooks/Prompt_Engineering_for_ImageNet.ipynb).
pub const IMAGENET: [&str; 80] = [
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
];

/// The built-in template sets, by the name the configuration and the API use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum TemplateSet {
    Default,
    Imagenet,
}

impl TemplateSet {
    pub fn templates(self) -> Vec<String> {
        let set: &[&str] = match self {
            Self::Default => &DEFAULT,
            Self::Imagenet => &IMAGENET,
        };
        set.iter().map(|t| t.to_string()).collect()
    }
}

impl std::str::FromStr for TemplateSet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "default" => Ok(Self::Default),
            "imagenet" => Ok(Self::Imagenet),
            other => Err(format!(
                "unknown template set {other:?}: expected \"default\" or \"imagenet\""
            )),
        }
    }
}

impl TryFrom<String> for TemplateSet {
    type Error = String;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        name.parse()
    }
}

impl From<TemplateSet> for String {
    fn from(set: TemplateSet) -> Self {
        match set {
            TemplateSet::Default => "default",
            TemplateSet::Imagenet => "imagenet",
        }
        .into()
    }
}

/// The prompt for `label` (every `{}` replaced).
pub fn fill(template: &str, label: &str) -> String {
    template.replace(PLACEHOLDER, label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_has_one_placeholder_and_they_are_distinct() {
        let mut all: Vec<&str> = IMAGENET.iter().chain(&DEFAULT).copied().collect();
        for t in &all {
            assert_eq!(t.matches(PLACEHOLDER).count(), 1, "{t}");
        }
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 80, "the default is one of the 80");
    }

    #[test]
    fn fill_replaces_the_placeholder() {
        assert_eq!(
            fill("a photo of a {}.", "red circle"),
            "a photo of a red circle."
        );
    }
}
