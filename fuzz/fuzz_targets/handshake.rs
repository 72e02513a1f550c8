#![no_main]
//! libFuzzer entry point; the body is [`headcount_fuzz::handshake`], which the
//! corpus replay test runs too.

#[global_allocator]
static ALLOC: headcount_fuzz::CountingAlloc = headcount_fuzz::CountingAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| headcount_fuzz::handshake(data));
