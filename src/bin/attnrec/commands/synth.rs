use crate::cli::SynthArgs;
use attnrec::data::synth;

pub fn run(a: SynthArgs) -> anyhow::Result<()> {
    let s = synth::generate(&a.preset.spec(), a.seed, &a.out)?;
    println!(
        "wrote {}: {} ratings, {} users, {} items, positive rate {:.3} (preset {:?}, seed {})",
        a.out.display(),
        s.ratings,
        s.users,
        s.items,
        s.positive_rate,
        a.preset,
        a.seed
    );
    Ok(())
}
