//! Writes the seed frames of the fuzz run into a directory (`tools/fuzz-frames.sh` calls it).

#[path = "../seeds.rs"]
mod seeds;

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/seeds/frame_decoder".into());
    std::fs::create_dir_all(&dir)?;
    let frames = seeds::seed_frames();
    for (i, frame) in frames.iter().enumerate() {
        std::fs::write(format!("{dir}/seed-{i:02}"), frame)?;
    }
    // A whole opening sequence in one input.
    std::fs::write(format!("{dir}/seed-sequence"), frames[..6].concat())?;
    println!("wrote {} seeds to {dir}", frames.len() + 1);
    Ok(())
}
