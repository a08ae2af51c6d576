//! Helpers shared by the tests that read fixtures written by the generator scripts in
//! tests/fixtures/, and the venv's Python. Each test crate uses some of them.
#![allow(dead_code)]
use serde::Deserialize;
use tch::Tensor;

/// A tensor as the fixture scripts write it: shape plus row-major data.
#[derive(Deserialize)]
pub struct T {
    pub shape: Vec<i64>,
    pub data: Vec<f64>,
}

impl T {
    /// The f32 tensor (the precision the models run in).
    pub fn tensor(&self) -> Tensor {
        let v: Vec<f32> = self.data.iter().map(|&x| x as f32).collect();
        Tensor::from_slice(&v).view(self.shape.as_slice())
    }
}

/// Reads `tests/fixtures/<name>`.
pub fn fixture_text(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The Python of the project's torch venv, for the checks that PyTorch itself runs.
#[allow(unused_imports)]
pub use attnrec::bench::venv_python;
