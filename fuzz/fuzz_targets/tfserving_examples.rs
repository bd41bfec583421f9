#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mlengine_fuzz::tfserving_examples(data));
