//! The engine's layering (config -> graph -> data/control -> observability -> runtime ->
//! supervisor; apps above the engine, never imported by it), checked by `tools/layering.sh`.

use std::process::Command;

/// Layering: no module names a module of a higher layer, and the engine never names `apps::`.
#[test]
fn no_module_imports_a_module_above_it() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/layering.sh");
    let output = Command::new("bash")
        .arg(script)
        .output()
        .expect("bash runs tools/layering.sh");
    assert!(
        output.status.success(),
        "layering violations:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
