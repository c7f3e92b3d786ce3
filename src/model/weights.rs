//! Strict loading of `model.safetensors` into a `VarStore`: every variable must be in the file
//! with the right shape, and every tensor in the file must be a variable.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use tch::{nn::VarStore, Kind, Tensor};

use crate::error::ModelError;

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

pub fn load_strict(vs: &mut VarStore, path: &Path) -> Result<(), ModelError> {
    let tensors = Tensor::read_safetensors(path).map_err(|e| ModelError::Weights {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let tensors: HashMap<String, Tensor> = tensors
        .into_iter()
        .filter(|(name, _)| !is_ignored_buffer(name))
        .collect();
    let variables = vs.variables();

    let absent_from = |names: Vec<&String>, other: &dyn Fn(&String) -> bool| -> Option<String> {
        let absent: BTreeSet<&String> = names.into_iter().filter(|n| !other(n)).collect();
        (!absent.is_empty()).then(|| list_names(absent))
    };
    if let Some(names) = absent_from(variables.keys().collect(), &|n| tensors.contains_key(n)) {
        return Err(ModelError::MissingTensors {
            path: path.to_owned(),
            names,
        });
    }
    if let Some(names) = absent_from(tensors.keys().collect(), &|n| variables.contains_key(n)) {
        return Err(ModelError::UnexpectedTensors {
            path: path.to_owned(),
            names,
        });
    }

    let mut names: Vec<&String> = variables.keys().collect();
    names.sort();
    for name in names {
        let (variable, stored) = (&variables[name], &tensors[name]);
        if !matches!(
            stored.kind(),
            Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double
        ) {
            return Err(ModelError::TensorKind {
                path: path.to_owned(),
                name: name.clone(),
                kind: format!("{:?}", stored.kind()),
            });
        }
        if variable.size() != stored.size() {
            return Err(ModelError::TensorShape {
                path: path.to_owned(),
                name: name.clone(),
                expected: variable.size(),
                found: stored.size(),
            });
        }
        tch::no_grad(|| {
            let mut variable = variable.shallow_clone();
            variable.f_copy_(stored)
        })?;
    }
    Ok(())
}
