//! Every check of the shared list (`shared::checks`), one `#[test]` each,
//! against this stage's binary, or the one `XPS_BIN` names.

shared::stage_tests!(13, env!("CARGO_BIN_EXE_stage13"));
