//! Arbitrary bytes through the whole front end: the parser, the BuildKit dump and
//! the instruction layer must return (Ok or Err) and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = kiln::syntax::parse(data) {
        let _ = kiln::syntax::dump(&file);
        if let Ok(stages) = kiln::instruction::parse(&file) {
            for stage in &stages.stages {
                let _ = kiln::instruction::outline(&stages, stage);
            }
        }
    }
});
