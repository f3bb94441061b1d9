//! Applications bundled with the engine. `fund_load` is the reference workload and the CLI's
//! default job; it uses only the public node API, as any embedding program would.

pub mod fund_load;
