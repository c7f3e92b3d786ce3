//! Strict loading of `model.safetensors` into a `VarStore`: every variable must be in the file
//! with the right shape, and every tensor in the file must be a variable.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use tch::{nn::VarStore, Kind, Tensor};

use super::ModelError;
use crate::files::FileError;

/// Buffers that older `transformers` versions saved with the weights; they hold `arange(n)` and
/// are recomputed, so, as in `transformers`, they are accepted and not read.
fn is_ignored_buffer(name: &str) -> bool {
    name.ends_with("embeddings.position_ids")
}

/// How many names an error lists before summarising the rest.
const NAMES_SHOWN: usize = 8;

fn list_names<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    let names: Vec<&String> = names.into_iter().collect();
    let mut listed = names
        .iter()
        .take(NAMES_SHOWN)
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > NAMES_SHOWN {
        listed.push_str(&format!(" and {} more", names.len() - NAMES_SHOWN));
    }
    listed
}

/// `model.safetensors`, memory-mapped: tensors are converted one at a time into the variables,
/// so a load needs the model's memory once (plus one tensor), not two or three times.
pub struct WeightsFile {
    path: PathBuf,
    bytes: memmap2::Mmap,
}

impl WeightsFile {
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let read_error = |source| FileError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        // SAFETY: the mapping is only read; a checkpoint rewritten while it is being loaded is
        // not supported (as with any loader that reads a file in pieces).
        let bytes = unsafe { memmap2::Mmap::map(&file) }.map_err(read_error)?;
        Ok(Self {
            path: path.to_owned(),
            bytes,
        })
    }

    fn error(&self, reason: String) -> ModelError {
        ModelError::Weights {
            path: self.path.clone(),
            reason,
        }
    }

    fn tensors(&self) -> Result<SafeTensors<'_>, ModelError> {
        SafeTensors::deserialize(&self.bytes).map_err(|e| self.error(format!("{e:?}")))
    }

    /// Elements in all tensors that are loaded (ignored buffers excluded); read from the header.
    pub fn parameter_count(&self) -> Result<u64, ModelError> {
        Ok(self
            .tensors()?
            .tensors()
            .iter()
            .filter(|(name, _)| !is_ignored_buffer(name))
            .map(|(_, view)| view.shape().iter().product::<usize>() as u64)
            .sum())
    }

    /// Copies every variable of `vs` from the file, strictly (see the module comment).
    pub fn load_into(&self, vs: &mut VarStore) -> Result<(), ModelError> {
        load_strict(vs, &self.path, &self.tensors()?)
    }
}

fn float_kind(dtype: Dtype) -> Option<Kind> {
    match dtype {
        Dtype::F32 => Some(Kind::Float),
        Dtype::F16 => Some(Kind::Half),
        Dtype::BF16 => Some(Kind::BFloat16),
        Dtype::F64 => Some(Kind::Double),
        _ => None,
    }
}

fn load_strict(vs: &mut VarStore, path: &Path, file: &SafeTensors) -> Result<(), ModelError> {
    let weights_error = |reason: String| ModelError::Weights {
        path: path.to_owned(),
        reason,
    };
    let stored: HashSet<String> = file
        .names()
        .into_iter()
        .filter(|name| !is_ignored_buffer(name))
        .cloned()
        .collect();
    let variables = vs.variables();

    let absent_from = |names: Vec<&String>, other: &dyn Fn(&String) -> bool| -> Option<String> {
        let absent: BTreeSet<&String> = names.into_iter().filter(|n| !other(n)).collect();
        (!absent.is_empty()).then(|| list_names(absent))
    };
    if let Some(names) = absent_from(variables.keys().collect(), &|n| stored.contains(n)) {
        return Err(ModelError::MissingTensors {
            path: path.to_owned(),
            names,
        });
    }
    if let Some(names) = absent_from(stored.iter().collect(), &|n| variables.contains_key(n)) {
        return Err(ModelError::UnexpectedTensors {
            path: path.to_owned(),
            names,
        });
    }

    let mut names: Vec<&String> = variables.keys().collect();
    names.sort();
    for name in names {
        let view = file
            .tensor(name)
            .map_err(|e| weights_error(format!("{name}: {e:?}")))?;
        let Some(kind) = float_kind(view.dtype()) else {
            return Err(ModelError::TensorKind {
                path: path.to_owned(),
                name: name.clone(),
                kind: format!("{:?}", view.dtype()),
            });
        };
        let variable = &variables[name];
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        if variable.size() != shape {
            return Err(ModelError::TensorShape {
                path: path.to_owned(),
                name: name.clone(),
                expected: variable.size(),
                found: shape,
            });
        }
        let tensor = Tensor::f_from_data_size(view.data(), &shape, kind)?;
        tch::no_grad(|| {
            let mut variable = variable.shallow_clone();
            variable.f_copy_(&tensor)
        })?;
    }
    Ok(())
}
