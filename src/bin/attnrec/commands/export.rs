//! `attnrec export`: a run as TorchScript, with its sidecar.
use crate::cli::ExportArgs;
use attnrec::run::load_run;
use tch::Device;

pub fn run(a: ExportArgs) -> anyhow::Result<()> {
    let mut run = load_run(&a.run, Device::Cpu)?;
    let e = attnrec::export::export(&mut run, a.data.as_deref(), &a.out, a.batch_size)?;
    let s = &e.sidecar_data;
    println!(
        "exported {} run {} as {} (TorchScript, batch {} × history {}); sidecar {}, vocabularies {}, example batches {}",
        s.model,
        a.run.display(),
        e.module.display(),
        s.batch_size,
        s.history_len,
        e.sidecar.display(),
        e.feature_map.display(),
        e.example.display()
    );
    println!("check it with PyTorch: python scripts/check_export.py {}", e.module.display());
    Ok(())
}
