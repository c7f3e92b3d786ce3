//! Strict model loading: a tampered checkpoint directory fails with an error that names the
//! culprit (file, key or tensor), and the tolerated oddities of real uploads (stale buffers,
//! half-precision storage, legacy config keys, missing config keys) load correctly.

mod common;

use std::path::{Path, PathBuf};

use clipd::files::FileError;
use clipd::model::Checkpoint;
use clipd::model::{Activation, ClipConfig, DeviceSpec, Dtype, ModelOptions};
use clipd::model::{Family, LoadedModel, ModelError};
use clipd::preprocess::InputLimits;
use common::*;
use serde_json::Value;
use tch::{Kind, Tensor};
use tempfile::TempDir;

/// What config.json said, as the checkpoint was loaded.
fn config(clip: &Checkpoint) -> &ClipConfig {
    let Family::HfClip(config) = &clip.family;
    config
}

const FILES: [&str; 4] = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "preprocessor_config.json",
];

/// A copy of a fixture checkpoint in its own temporary folder, removed on drop.
struct TempModel {
    dir: TempDir,
}

impl TempModel {
    fn copy_of(fixture: &str, tag: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("clipd-loading-{tag}-"))
            .tempdir()
            .unwrap();
        let source = model_dir(fixture);
        for file in FILES {
            // fs::copy follows the tokenizer.json symlink and copies its target.
            std::fs::copy(source.join(file), dir.path().join(file))
                .unwrap_or_else(|e| panic!("copying {file}: {e}"));
        }
        Self { dir }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir().join(file)
    }

    fn tensors(&self) -> Vec<(String, Tensor)> {
        let mut tensors = Tensor::read_safetensors(self.path("model.safetensors")).unwrap();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        tensors
    }

    fn write_tensors(&self, tensors: &[(String, Tensor)]) {
        Tensor::write_safetensors(tensors, self.path("model.safetensors")).unwrap();
    }

    /// Rewrites the weights, passing each (name, tensor) through `f` (`None` drops it).
    fn map_tensors(&self, f: impl Fn(&str, Tensor) -> Option<Tensor>) {
        let tensors: Vec<(String, Tensor)> = self
            .tensors()
            .into_iter()
            .filter_map(|(name, t)| f(&name, t).map(|t| (name, t)))
            .collect();
        self.write_tensors(&tensors);
    }

    fn edit_json(&self, file: &str, edit: impl FnOnce(&mut Value)) {
        let path = self.path(file);
        let mut value: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        edit(&mut value);
        std::fs::write(&path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
    }
}

fn load_err(dir: &Path) -> ModelError {
    match Checkpoint::load(dir, &cpu_f32(), &InputLimits::default()) {
        Ok(_) => panic!("{} loaded, but it should have failed", dir.display()),
        Err(e) => e,
    }
}

fn assert_mentions(error: &ModelError, needles: &[&str]) {
    let message = error.to_string();
    for needle in needles {
        assert!(
            message.contains(needle),
            "the error {message:?} does not mention {needle:?}"
        );
    }
}

const TEXTS: [&str; 3] = ["a photo of a cat", "", "two dogs playing in the snow"];
const IMAGES: [&str; 3] = ["rgb_640x480.png", "q90_444_320x240.jpg", "rgba_300x200.png"];

/// Text then image embeddings of a few fixed inputs.
fn embeddings(clip: &Checkpoint) -> Vec<Vec<f32>> {
    let mut all: Vec<Vec<f32>> = clip
        .embed_texts(&TEXTS)
        .unwrap()
        .into_iter()
        .map(|t| t.values)
        .collect();
    let bytes: Vec<Vec<u8>> = IMAGES
        .iter()
        .map(|n| std::fs::read(image_path(n)).unwrap())
        .collect();
    let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
    all.extend(clip.embed_images(&refs).unwrap());
    all
}

fn assert_same_embeddings(got: &[Vec<f32>], want: &[Vec<f32>], what: &str) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let cos = cosine(g, w);
        assert!(cos >= 0.99999, "{what}: embedding #{i} has cosine {cos}");
    }
}

// ---------------------------------------------------------------------------------------------
// model.safetensors

#[test]
fn unmodified_copy_loads_and_matches_the_fixture() {
    for name in CHECKPOINTS {
        let copy = TempModel::copy_of(name, "unmodified");
        assert_same_embeddings(
            &embeddings(&load_cpu(copy.dir())),
            &embeddings(&load_cpu(&model_dir(name))),
            name,
        );
    }
}

#[test]
fn missing_tensor_is_named() {
    let model = TempModel::copy_of("tiny-a", "missing");
    model.map_tensors(|name, t| (name != "text_projection.weight").then_some(t));
    let error = load_err(model.dir());
    assert!(
        matches!(error, ModelError::MissingTensors { .. }),
        "{error:?}"
    );
    assert_mentions(&error, &["text_projection.weight", "model.safetensors"]);
}

#[test]
fn several_missing_tensors_are_all_named() {
    let model = TempModel::copy_of("tiny-b", "missing-several");
    let dropped = [
        "logit_scale",
        "vision_model.post_layernorm.bias",
        "text_model.encoder.layers.2.mlp.fc1.weight",
    ];
    model.map_tensors(|name, t| (!dropped.contains(&name)).then_some(t));
    let error = load_err(model.dir());
    assert!(
        matches!(error, ModelError::MissingTensors { .. }),
        "{error:?}"
    );
    assert_mentions(&error, &dropped);
}

#[test]
fn unexpected_tensor_is_named() {
    let model = TempModel::copy_of("tiny-a", "unexpected");
    let mut tensors = model.tensors();
    tensors.push((
        "vision_model.extra.weight".into(),
        Tensor::ones([4, 4], (Kind::Float, tch::Device::Cpu)),
    ));
    model.write_tensors(&tensors);
    let error = load_err(model.dir());
    assert!(
        matches!(error, ModelError::UnexpectedTensors { .. }),
        "{error:?}"
    );
    assert_mentions(&error, &["vision_model.extra.weight", "model.safetensors"]);
}

#[test]
fn misshaped_tensor_is_named_with_both_shapes() {
    let model = TempModel::copy_of("tiny-a", "misshaped");
    let name = "text_projection.weight";
    let original = model
        .tensors()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap()
        .1
        .size();
    assert_eq!(original, vec![24, 32], "tiny-a's {name} changed");
    model.map_tensors(|n, t| {
        Some(if n == name {
            t.narrow(1, 0, 31).contiguous()
        } else {
            t
        })
    });
    let error = load_err(model.dir());
    match &error {
        ModelError::TensorShape {
            name: n,
            expected,
            found,
            ..
        } => {
            assert_eq!(n, name);
            assert_eq!(expected, &[24, 32]);
            assert_eq!(found, &[24, 31]);
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
    assert_mentions(&error, &[name, "[24, 32]", "[24, 31]"]);
}

#[test]
fn transposed_tensor_is_a_shape_error() {
    let model = TempModel::copy_of("tiny-b", "transposed");
    let name = "visual_projection.weight";
    model.map_tensors(|n, t| Some(if n == name { t.tr().contiguous() } else { t }));
    let error = load_err(model.dir());
    assert!(matches!(error, ModelError::TensorShape { .. }), "{error:?}");
    assert_mentions(&error, &[name, "[20, 36]", "[36, 20]"]);
}

#[test]
fn integer_typed_weight_is_rejected() {
    for kind in [Kind::Int64, Kind::Int, Kind::Uint8, Kind::Bool] {
        let model = TempModel::copy_of("tiny-a", "integer");
        let name = "text_model.final_layer_norm.weight";
        model.map_tensors(|n, t| Some(if n == name { t.to_kind(kind) } else { t }));
        let error = load_err(model.dir());
        assert!(
            matches!(error, ModelError::TensorKind { .. }),
            "{kind:?}: {error:?}"
        );
        assert_mentions(&error, &[name]);
    }
}

#[test]
fn stale_position_ids_buffers_are_ignored() {
    for fixture in CHECKPOINTS {
        let model = TempModel::copy_of(fixture, "position-ids");
        let mut tensors = model.tensors();
        let clip = load_cpu(&model_dir(fixture));
        let positions = [
            ("text_model", config(&clip).text.max_position_embeddings),
            ("vision_model", config(&clip).vision.num_patches() + 1),
        ];
        for (tower, n) in positions {
            tensors.push((
                format!("{tower}.embeddings.position_ids"),
                Tensor::arange(n, (Kind::Int64, tch::Device::Cpu)).unsqueeze(0),
            ));
        }
        model.write_tensors(&tensors);
        assert_same_embeddings(
            &embeddings(&load_cpu(model.dir())),
            &embeddings(&clip),
            fixture,
        );
    }
}

#[test]
fn half_precision_storage_loads_to_the_same_embeddings_as_f32_storage() {
    for fixture in CHECKPOINTS {
        for kind in [Kind::Half, Kind::BFloat16] {
            // The same values stored two ways: in `kind`, and widened to f32 (exactly).
            let stored = TempModel::copy_of(fixture, "stored-half");
            let widened = TempModel::copy_of(fixture, "stored-f32");
            let tensors = stored.tensors();
            let narrow: Vec<(String, Tensor)> = tensors
                .iter()
                .map(|(n, t)| (n.clone(), t.to_kind(kind)))
                .collect();
            let wide: Vec<(String, Tensor)> = narrow
                .iter()
                .map(|(n, t)| (n.clone(), t.to_kind(Kind::Float)))
                .collect();
            stored.write_tensors(&narrow);
            widened.write_tensors(&wide);
            for (dir, want) in [(&stored, kind), (&widened, Kind::Float)] {
                assert!(
                    dir.tensors().iter().all(|(_, t)| t.kind() == want),
                    "{fixture}: the rewritten file does not store {want:?}"
                );
            }

            let half_clip = load_cpu(stored.dir());
            let half_towers = LoadedModel::load(
                config(&half_clip),
                &stored.path("model.safetensors"),
                &cpu_f32(),
            )
            .unwrap();
            assert!(
                half_towers
                    .vs
                    .variables()
                    .values()
                    .all(|v| v.kind() == Kind::Float),
                "{fixture} {kind:?}: weights are not f32 after loading with --dtype f32"
            );
            assert_same_embeddings(
                &embeddings(&half_clip),
                &embeddings(&load_cpu(widened.dir())),
                &format!("{fixture} stored as {kind:?}"),
            );
        }
    }
}

#[test]
fn corrupt_safetensors_file_names_the_file() {
    let model = TempModel::copy_of("tiny-a", "corrupt");
    let path = model.path("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let error = load_err(model.dir());
    assert!(matches!(error, ModelError::Weights { .. }), "{error:?}");
    assert_mentions(&error, &[path.to_str().unwrap()]);
}

// ---------------------------------------------------------------------------------------------
// config.json

fn config_error(edit: impl FnOnce(&mut Value)) -> ModelError {
    let model = TempModel::copy_of("tiny-a", "config");
    model.edit_json("config.json", edit);
    let error = load_err(model.dir());
    assert!(
        matches!(error, ModelError::File(FileError::Invalid { .. })),
        "{error:?}"
    );
    assert_mentions(&error, &[model.path("config.json").to_str().unwrap()]);
    error
}

#[test]
fn invalid_config_json_names_the_file() {
    let model = TempModel::copy_of("tiny-a", "config-invalid");
    std::fs::write(model.path("config.json"), "{\"projection_dim\": 24,").unwrap();
    let error = load_err(model.dir());
    assert!(
        matches!(error, ModelError::File(FileError::Invalid { .. })),
        "{error:?}"
    );
    assert_mentions(&error, &[model.path("config.json").to_str().unwrap()]);
}

#[test]
fn hidden_size_not_divisible_by_heads_is_rejected() {
    let error = config_error(|c| c["text_config"]["num_attention_heads"] = 5.into());
    assert_mentions(&error, &["text_config", "num_attention_heads"]);
    let error = config_error(|c| c["vision_config"]["hidden_size"] = 50.into());
    assert_mentions(&error, &["vision_config", "hidden_size"]);
}

#[test]
fn unknown_hidden_act_is_rejected() {
    let error = config_error(|c| c["vision_config"]["hidden_act"] = "swish".into());
    assert_mentions(&error, &["swish"]);
}

#[test]
fn model_type_other_than_clip_is_rejected() {
    let error = config_error(|c| c["model_type"] = "siglip".into());
    assert_mentions(&error, &["siglip"]);
}

#[test]
fn non_positive_sizes_are_rejected() {
    let error = config_error(|c| c["projection_dim"] = 0.into());
    assert_mentions(&error, &["projection_dim"]);
    let error = config_error(|c| c["vision_config"]["patch_size"] = 0.into());
    assert_mentions(&error, &["patch_size"]);
}

#[test]
fn legacy_config_dicts_win_over_text_config_and_vision_config() {
    let model = TempModel::copy_of("tiny-a", "config-dict");
    model.edit_json("config.json", |c| {
        let garbage = serde_json::json!({
            "hidden_size": 7, "num_attention_heads": 3, "num_hidden_layers": 99,
            "intermediate_size": 1, "image_size": 5, "patch_size": 2,
        });
        c["text_config_dict"] = c["text_config"].take();
        c["vision_config_dict"] = c["vision_config"].take();
        c["text_config"] = garbage.clone();
        c["vision_config"] = garbage;
    });
    let clip = load_cpu(model.dir());
    let original = load_cpu(&model_dir("tiny-a"));
    assert_eq!(config(&clip), config(&original));
    assert_same_embeddings(&embeddings(&clip), &embeddings(&original), "tiny-a");
}

#[test]
fn empty_config_takes_the_transformers_defaults() {
    let config = ClipConfig::from_json("{}").unwrap();
    assert_eq!(config.projection_dim, 512);
    assert_eq!(config.text.hidden_size, 512);
    assert_eq!(config.text.intermediate_size, 2048);
    assert_eq!(config.text.num_hidden_layers, 12);
    assert_eq!(config.text.num_attention_heads, 8);
    assert_eq!(config.text.max_position_embeddings, 77);
    assert_eq!(config.text.vocab_size, 49408);
    assert_eq!(config.text.eos_token_id, 49407);
    assert_eq!(config.vision.hidden_size, 768);
    assert_eq!(config.vision.intermediate_size, 3072);
    assert_eq!(config.vision.num_attention_heads, 12);
    assert_eq!(config.vision.image_size, 224);
    assert_eq!(config.vision.patch_size, 32);
    assert_eq!(config.vision.hidden_act, Activation::QuickGelu);
}

#[test]
fn partial_text_config_falls_back_to_defaults_key_by_key() {
    let config = ClipConfig::from_json(
        r#"{"projection_dim": 64,
            "text_config": {"hidden_size": 64, "num_attention_heads": 4, "hidden_act": "gelu"},
            "vision_config": {"patch_size": 16, "model_type": "clip_vision_model"}}"#,
    )
    .unwrap();
    assert_eq!(config.projection_dim, 64);
    assert_eq!(config.text.hidden_size, 64);
    assert_eq!(config.text.num_attention_heads, 4);
    assert_eq!(config.text.hidden_act, Activation::Gelu);
    assert_eq!(config.text.intermediate_size, 2048);
    assert_eq!(config.text.num_hidden_layers, 12);
    assert_eq!(config.text.max_position_embeddings, 77);
    assert_eq!(config.text.layer_norm_eps, 1e-5);
    assert_eq!(config.text.eos_token_id, 49407);
    assert_eq!(config.vision.patch_size, 16);
    assert_eq!(config.vision.hidden_size, 768);
    assert_eq!(config.vision.num_patches(), 196);
}

#[test]
fn gelu_aliases_parse_as_the_tanh_approximation() {
    for name in ["gelu_new", "gelu_pytorch_tanh", "gelu_fast"] {
        let json = format!(r#"{{"text_config": {{"hidden_act": "{name}"}}}}"#);
        let config = ClipConfig::from_json(&json).unwrap();
        assert_eq!(config.text.hidden_act, Activation::GeluTanh, "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// preprocessor_config.json

fn preprocessor_error(fixture: &str, edit: impl FnOnce(&mut Value)) -> ModelError {
    let model = TempModel::copy_of(fixture, "preprocessor");
    model.edit_json("preprocessor_config.json", edit);
    let error = load_err(model.dir());
    assert!(
        matches!(error, ModelError::File(FileError::Invalid { .. })),
        "{error:?}"
    );
    assert_mentions(
        &error,
        &[model.path("preprocessor_config.json").to_str().unwrap()],
    );
    error
}

#[test]
fn non_bicubic_resample_is_rejected() {
    for resample in [0, 1, 2] {
        let error = preprocessor_error("tiny-a", |c| c["resample"] = resample.into());
        assert_mentions(&error, &["bicubic"]);
    }
}

#[test]
fn crop_size_other_than_the_vision_image_size_is_rejected() {
    // tiny-a: integer sizes (old format), image_size 64.
    let error = preprocessor_error("tiny-a", |c| c["crop_size"] = 32.into());
    assert_mentions(&error, &["64"]);
    // tiny-b: object sizes (new format), image_size 48.
    preprocessor_error("tiny-b", |c| {
        c["crop_size"] = serde_json::json!({"height": 48, "width": 40})
    });
}

#[test]
fn size_caps_and_bad_sizes_are_rejected_naming_the_key() {
    let error = preprocessor_error("tiny-b", |c| {
        c["size"] = serde_json::json!({"shortest_edge": 48, "longest_edge": 100})
    });
    assert_mentions(&error, &["size.longest_edge"]);
    let error = preprocessor_error("tiny-b", |c| {
        c["crop_size"] = serde_json::json!({"height": 0, "width": 48})
    });
    assert_mentions(&error, &["crop_size.height"]);
    let error = preprocessor_error("tiny-a", |c| c["size"] = "large".into());
    assert_mentions(&error, &["size", "large"]);
}

#[test]
fn image_mean_with_two_values_is_rejected() {
    let error = preprocessor_error("tiny-b", |c| {
        c["image_mean"] = serde_json::json!([0.5, 0.5])
    });
    assert_mentions(&error, &["image_mean"]);
}

#[test]
fn zero_image_std_is_rejected() {
    let error = preprocessor_error("tiny-b", |c| {
        c["image_std"] = serde_json::json!([0.25, 0.0, 0.35])
    });
    assert_mentions(&error, &["image_std"]);
}

// ---------------------------------------------------------------------------------------------
// files

#[test]
fn each_missing_file_is_named() {
    for file in FILES {
        let model = TempModel::copy_of("tiny-b", "missing-file");
        std::fs::remove_file(model.path(file)).unwrap();
        let error = load_err(model.dir());
        assert_mentions(
            &error,
            &[model.path(file).to_str().unwrap(), "No such file"],
        );
    }
}

#[test]
fn nonexistent_model_directory_is_an_error() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("nowhere");
    let error = load_err(&dir);
    assert_mentions(&error, &[dir.to_str().unwrap()]);
}

#[test]
fn invalid_tokenizer_json_names_the_file() {
    let model = TempModel::copy_of("tiny-a", "tokenizer");
    std::fs::write(model.path("tokenizer.json"), "{\"version\": \"1.0\"}").unwrap();
    let error = load_err(model.dir());
    assert!(
        matches!(error, ModelError::File(FileError::Invalid { .. })),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("cannot load the tokenizer"),
        "{error}"
    );
    assert_mentions(&error, &[model.path("tokenizer.json").to_str().unwrap()]);
}

// ---------------------------------------------------------------------------------------------
// device and dtype

#[test]
fn cuda_without_a_gpu_is_device_unavailable() {
    if tch::Cuda::is_available() {
        eprintln!("skipped: this machine has a CUDA device");
        return;
    }
    let options = ModelOptions {
        device: DeviceSpec::Cuda(0),
        dtype: Dtype::F32,
    };
    match Checkpoint::load(&model_dir("tiny-a"), &options, &InputLimits::default()) {
        Ok(_) => panic!("loaded on cuda:0 without a GPU"),
        Err(error) => {
            assert!(
                matches!(error, ModelError::DeviceUnavailable(..)),
                "{error:?}"
            );
            assert_mentions(&error, &["cuda:0", "not available"]);
        }
    }
}

#[test]
fn cuda_index_beyond_the_device_count_is_device_unavailable() {
    let error = DeviceSpec::Cuda(99).resolve().unwrap_err();
    assert!(
        matches!(error, ModelError::DeviceUnavailable(..)),
        "{error:?}"
    );
    assert_mentions(&error, &["cuda:99"]);
}

#[test]
fn device_specs_parse() {
    let good = [
        ("auto", DeviceSpec::Auto),
        ("cpu", DeviceSpec::Cpu),
        ("CPU", DeviceSpec::Cpu),
        (" cpu ", DeviceSpec::Cpu),
        ("cuda", DeviceSpec::Cuda(0)),
        ("cuda:0", DeviceSpec::Cuda(0)),
        ("cuda:3", DeviceSpec::Cuda(3)),
        ("CUDA:1", DeviceSpec::Cuda(1)),
    ];
    for (text, want) in good {
        assert_eq!(text.parse::<DeviceSpec>().unwrap(), want, "{text:?}");
    }
    for spec in [DeviceSpec::Auto, DeviceSpec::Cpu, DeviceSpec::Cuda(2)] {
        assert_eq!(spec.to_string().parse::<DeviceSpec>().unwrap(), spec);
    }
    for bad in [
        "", "tpu", "gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:1:2", "cpu0", "mps",
    ] {
        let error = bad.parse::<DeviceSpec>().unwrap_err();
        assert!(
            matches!(error, ModelError::DeviceSyntax(_)),
            "{bad:?}: {error:?}"
        );
        assert_mentions(&error, &[&format!("{bad:?}")]);
    }
}

#[test]
fn dtypes_parse() {
    let good = [
        ("f32", Dtype::F32),
        ("float32", Dtype::F32),
        ("F16", Dtype::F16),
        ("half", Dtype::F16),
        ("fp16", Dtype::F16),
        ("bf16", Dtype::Bf16),
        ("bfloat16", Dtype::Bf16),
    ];
    for (text, want) in good {
        assert_eq!(text.parse::<Dtype>().unwrap(), want, "{text:?}");
    }
    for dtype in [Dtype::F32, Dtype::F16, Dtype::Bf16] {
        assert_eq!(dtype.to_string().parse::<Dtype>().unwrap(), dtype);
    }
    assert_eq!(Dtype::Bf16.kind(), Kind::BFloat16);
    for bad in ["", "f64", "int8", "b16", "float"] {
        let error = bad.parse::<Dtype>().unwrap_err();
        assert!(
            matches!(error, ModelError::DtypeSyntax(_)),
            "{bad:?}: {error:?}"
        );
        assert_mentions(&error, &[&format!("{bad:?}")]);
    }
}

#[test]
fn a_tokenizer_larger_than_the_embedding_table_is_rejected() {
    // A checkpoint whose token table is smaller than the tokenizer's vocabulary would index past
    // the table at the first text; the pair is refused at load time instead.
    let model = TempModel::copy_of("tiny-b", "vocab");
    model.edit_json("config.json", |c| {
        c["text_config"]["vocab_size"] = 1000.into()
    });
    model.map_tensors(|name, t| {
        Some(if name == "text_model.embeddings.token_embedding.weight" {
            t.narrow(0, 0, 1000).contiguous()
        } else {
            t
        })
    });
    let error = load_err(model.dir());
    assert_mentions(&error, &["tokenizer.json", "1000", "49407"]);
}

#[test]
fn the_parameter_count_of_a_config_is_what_the_modules_hold() {
    for name in CHECKPOINTS {
        let config = ClipConfig::from_file(&model_dir(name).join("config.json")).unwrap();
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let _model = clipd::model::ClipModel::new(&vs.root(), &config);
        let held: i64 = vs.variables().values().map(|t| t.numel() as i64).sum();
        assert_eq!(config.parameter_count() as i64, held, "{name}");
    }
}

#[test]
fn a_config_far_larger_than_its_weights_is_refused_before_building_the_model() {
    let model = TempModel::copy_of("tiny-a", "huge");
    model.edit_json("config.json", |c| {
        c["vision_config"]["hidden_size"] = 65536.into();
        c["vision_config"]["num_attention_heads"] = 1.into();
    });
    let error = load_err(model.dir());
    assert_mentions(&error, &["model.safetensors", "parameters"]);
}

#[test]
fn a_tokenizer_ending_texts_with_another_token_than_eos_is_rejected() {
    let model = TempModel::copy_of("tiny-b", "eos");
    model.edit_json("config.json", |c| {
        c["text_config"]["eos_token_id"] = 49406.into()
    });
    let error = load_err(model.dir());
    assert_mentions(&error, &["tokenizer.json", "49407", "49406"]);
}

#[test]
fn a_context_too_short_for_start_end_and_one_token_is_rejected() {
    let error =
        ClipConfig::from_json(r#"{"text_config": {"max_position_embeddings": 2}}"#).unwrap_err();
    assert!(error.contains("max_position_embeddings"), "{error}");
}
