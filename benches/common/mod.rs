//! Command-line flags of the benchmark programs: `--flag value` pairs after cargo's `--bench`.

use anyhow::Context;

pub fn flags() -> anyhow::Result<Vec<(String, String)>> {
    let mut flags = Vec::new();
    let mut it = std::env::args().skip(1).filter(|arg| arg != "--bench");
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        flags.push((flag, value));
    }
    Ok(flags)
}
