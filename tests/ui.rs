//! Compile-time checks of `#[host]` (trybuild): hosts that compile and run, and mistakes that fail to
//! compile with a message naming the problem and the valid choices (the committed `.stderr` files).
//! Regenerate them after a deliberate message change with `TRYBUILD=overwrite cargo test -p paranix-tests --test ui`.

#[test]
fn host_attribute() {
    let cases = trybuild::TestCases::new();
    cases.pass("ui/pass/*.rs");
    cases.compile_fail("ui/fail/*.rs");
}
