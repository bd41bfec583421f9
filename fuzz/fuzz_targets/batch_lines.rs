#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mlengine_fuzz::batch_lines(data));
