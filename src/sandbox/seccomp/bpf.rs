//! The filter as a classic BPF program. Per architecture of the process (the
//! `seccomp_data.arch` word): a binary search over the syscall number, whose leaves return
//! an action or test the arguments of one syscall, rule after rule. Every block of code
//! only jumps forward within itself, so blocks compose by concatenation; a conditional
//! jump over more than 255 instructions goes through a `ja`.

use super::super::error::SeccompError;
use super::profile::{ArgCondition, Op};
use super::syscalls::Numbers;
pub use crate::sys::seccomp::Instruction;

const LD_W_ABS: u16 = 0x20;
const ALU_AND_K: u16 = 0x54;
const JA: u16 = 0x05;
const JEQ_K: u16 = 0x15;
const JGT_K: u16 = 0x25;
const JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;

/// Offsets in `struct seccomp_data` (little-endian: an argument's low word first).
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
const ARGS_OFFSET: u32 = 16;

/// The kernel's longest filter.
const MAX_INSTRUCTIONS: usize = 4096;

/// Return values (`SECCOMP_RET_*`; the low 16 bits are the data).
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_KILL_THREAD: u32 = 0x0000_0000;
pub const RET_TRAP: u32 = 0x0003_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_TRACE: u32 = 0x7ff0_0000;
pub const RET_LOG: u32 = 0x7ffc_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;

/// x32 syscalls are x86_64's audit architecture with this bit in the number.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A syscall ABI an x86_64 or aarch64 process can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abi {
    X86_64,
    X86,
    X32,
    Aarch64,
    Arm,
}

impl Abi {
    /// `AUDIT_ARCH_*`, what the kernel puts in `seccomp_data.arch`.
    pub fn audit_arch(self) -> u32 {
        match self {
            Abi::X86_64 | Abi::X32 => 0xc000_003e,
            Abi::X86 => 0x4000_0003,
            Abi::Aarch64 => 0xc000_00b7,
            Abi::Arm => 0x4000_0028,
        }
    }

    /// Whether syscall arguments are 32-bit (only their low word is compared).
    fn narrow(self) -> bool {
        matches!(self, Abi::X86 | Abi::X32 | Abi::Arm)
    }

    /// The number of syscall `name` in this ABI (with x32's bit), if it has it.
    #[cfg(test)]
    pub fn number(self, name: &str) -> Option<u32> {
        self.pick(super::syscalls::lookup(name)?)
    }

    /// This ABI's number among a syscall's `numbers` (with x32's bit), if it has one.
    pub fn pick(self, numbers: &Numbers) -> Option<u32> {
        let column = match self {
            Abi::X86_64 => 0,
            Abi::X86 => 1,
            Abi::X32 => 2,
            Abi::Aarch64 => 3,
            Abi::Arm => 4,
        };
        let number = u32::try_from(numbers[column]).ok()?;
        Some(if self == Abi::X32 {
            number | X32_SYSCALL_BIT
        } else {
            number
        })
    }
}

/// A rule with argument conditions: `ret` when all of them hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guarded {
    pub conditions: Vec<ArgCondition>,
    pub ret: u32,
}

/// What one syscall number returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Return(u32),
    /// The first rule whose conditions hold, else `otherwise`.
    Guarded {
        rules: Vec<Guarded>,
        otherwise: u32,
    },
}

/// One ABI's part of the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbiTable {
    pub abi: Abi,
    /// By number, ascending.
    pub syscalls: Vec<(u32, Outcome)>,
    /// What numbers absent from `syscalls` return.
    pub default: u32,
    /// Numbers above the first (the newest syscall the profile names) return the second.
    pub past_newest: Option<(u32, u32)>,
}

/// The whole program: `tables` by architecture, `bad_arch` for any other.
pub fn program(tables: &[AbiTable], bad_arch: u32) -> Result<Vec<Instruction>, SeccompError> {
    let mut code = vec![stmt(LD_W_ABS, ARCH_OFFSET)];
    let table = |abi| tables.iter().find(|t| t.abi == abi);
    for abi in [Abi::X86_64, Abi::X86, Abi::Aarch64, Abi::Arm] {
        let block = match (abi, table(abi)) {
            (_, None) => continue,
            // x86_64 and x32 share the audit architecture; x32 numbers have a high bit.
            (Abi::X86_64, Some(x86_64)) => {
                let x32 = match table(Abi::X32) {
                    Some(x32) => search(x32)?,
                    None => vec![stmt(RET_K, bad_arch)],
                };
                branch(JGE_K, X32_SYSCALL_BIT, search(x86_64)?, x32)
            }
            (_, Some(table)) => search(table)?,
        };
        let mut for_abi = Vec::with_capacity(block.len() + 1);
        for_abi.push(stmt(LD_W_ABS, NR_OFFSET));
        for_abi.extend(block);
        code.extend(only_if_equal(abi.audit_arch(), for_abi));
    }
    code.push(stmt(RET_K, bad_arch));
    if code.len() > MAX_INSTRUCTIONS {
        return Err(SeccompError::TooLong(code.len()));
    }
    Ok(code)
}

fn stmt(code: u16, k: u32) -> Instruction {
    Instruction {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Instruction {
    Instruction { code, jt, jf, k }
}

/// `if A <op> k` run `taken`, else `not_taken`; both must end in a return.
fn branch(
    op: u16,
    k: u32,
    not_taken: Vec<Instruction>,
    taken: Vec<Instruction>,
) -> Vec<Instruction> {
    let mut code = Vec::with_capacity(not_taken.len() + taken.len() + 2);
    match u8::try_from(not_taken.len()) {
        Ok(skip) => code.push(jump(op, k, skip, 0)),
        Err(_) => {
            code.push(jump(op, k, 0, 1));
            code.push(stmt(JA, not_taken.len() as u32));
        }
    }
    code.extend(not_taken);
    code.extend(taken);
    code
}

/// `block` when `A == k`; otherwise the code after it.
fn only_if_equal(k: u32, block: Vec<Instruction>) -> Vec<Instruction> {
    let mut code = Vec::with_capacity(block.len() + 2);
    match u8::try_from(block.len()) {
        Ok(skip) => code.push(jump(JEQ_K, k, 0, skip)),
        Err(_) => {
            code.push(jump(JEQ_K, k, 1, 0));
            code.push(stmt(JA, block.len() as u32));
        }
    }
    code.extend(block);
    code
}

/// A run of syscall numbers, from `start` up to the next run's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaf<'a> {
    Return(u32),
    Guarded(&'a [Guarded], u32),
}

/// `table` as runs of numbers: adjacent numbers that return the same merge.
fn runs(table: &AbiTable) -> Vec<(u32, Leaf<'_>)> {
    fn push<'a>(runs: &mut Vec<(u32, Leaf<'a>)>, start: u32, leaf: Leaf<'a>) {
        if runs.last().is_some_and(|(s, _)| *s == start) {
            runs.pop();
        }
        if !matches!(leaf, Leaf::Return(_)) || runs.last().map(|(_, l)| *l) != Some(leaf) {
            runs.push((start, leaf));
        }
    }
    let mut runs = Vec::new();
    push(&mut runs, 0, Leaf::Return(table.default));
    for (number, outcome) in &table.syscalls {
        let number = *number;
        let leaf = match outcome {
            Outcome::Return(ret) => Leaf::Return(*ret),
            Outcome::Guarded { rules, otherwise } => Leaf::Guarded(rules, *otherwise),
        };
        push(&mut runs, number, leaf);
        if let Some(next) = number.checked_add(1) {
            push(&mut runs, next, Leaf::Return(table.default));
        }
    }
    if let Some((newest, ret)) = table.past_newest
        && let Some(next) = newest.checked_add(1)
    {
        push(&mut runs, next, Leaf::Return(ret));
    }
    runs
}

/// A binary search of `table`'s runs on the syscall number (in A).
fn search(table: &AbiTable) -> Result<Vec<Instruction>, SeccompError> {
    tree(&runs(table), table.abi.narrow())
}

fn tree(runs: &[(u32, Leaf<'_>)], narrow: bool) -> Result<Vec<Instruction>, SeccompError> {
    match runs {
        [] => Ok(Vec::new()),
        [(_, Leaf::Return(ret))] => Ok(vec![stmt(RET_K, *ret)]),
        [(_, Leaf::Guarded(rules, otherwise))] => guarded(rules, *otherwise, narrow),
        _ => {
            let middle = runs.len() / 2;
            let below = tree(&runs[..middle], narrow)?;
            let above = tree(&runs[middle..], narrow)?;
            Ok(branch(JGE_K, runs[middle].0, below, above))
        }
    }
}

/// Where a condition's jump goes: the next instruction, past the condition (it holds),
/// or to the next rule (it does not).
#[derive(Debug, Clone, Copy)]
enum Target {
    Next,
    Holds,
    Fails,
}

enum Step {
    Stmt(u16, u32),
    Jump(u16, u32, Target, Target),
}

/// The rules of one syscall, tried in order, then `otherwise`.
fn guarded(
    rules: &[Guarded],
    otherwise: u32,
    narrow: bool,
) -> Result<Vec<Instruction>, SeccompError> {
    let mut code = Vec::new();
    for rule in rules {
        let steps: Vec<Vec<Step>> = rule
            .conditions
            .iter()
            .map(|c| condition(c, narrow))
            .collect();
        let rule_len: usize = steps.iter().map(Vec::len).sum::<usize>() + 1;
        let mut at = 0;
        for condition in steps {
            let end = at + condition.len();
            for step in condition {
                let offset = |target| {
                    let to = match target {
                        Target::Next => at + 1,
                        Target::Holds => end,
                        Target::Fails => rule_len,
                    };
                    u8::try_from(to - at - 1).map_err(|_| {
                        SeccompError::Invalid("a rule has too many argument conditions".into())
                    })
                };
                code.push(match step {
                    Step::Stmt(op, k) => stmt(op, k),
                    Step::Jump(op, k, jt, jf) => jump(op, k, offset(jt)?, offset(jf)?),
                });
                at += 1;
            }
        }
        code.push(stmt(RET_K, rule.ret));
    }
    code.push(stmt(RET_K, otherwise));
    Ok(code)
}

/// Unsigned 64-bit comparison of an argument (its high word, then its low word), or of
/// its low word alone for a 32-bit ABI.
fn condition(condition: &ArgCondition, narrow: bool) -> Vec<Step> {
    use Step::{Jump, Stmt};
    use Target::{Fails, Holds, Next};
    let low_offset = ARGS_OFFSET + 8 * condition.index;
    let high_offset = low_offset + 4;
    let (high, low) = ((condition.value >> 32) as u32, condition.value as u32);
    let (high_two, low_two) = (
        (condition.value_two >> 32) as u32,
        condition.value_two as u32,
    );
    // The high words: decide, or fall through to the low words when equal.
    let high_words = match condition.op {
        _ if narrow => vec![],
        Op::Equal => vec![Jump(JEQ_K, high, Next, Fails)],
        Op::NotEqual => vec![Jump(JEQ_K, high, Next, Holds)],
        Op::Greater | Op::GreaterOrEqual => vec![
            Jump(JGT_K, high, Holds, Next),
            Jump(JEQ_K, high, Next, Fails),
        ],
        Op::Less | Op::LessOrEqual => vec![
            Jump(JGT_K, high, Fails, Next),
            Jump(JEQ_K, high, Next, Holds),
        ],
        Op::MaskedEqual => vec![Stmt(ALU_AND_K, high), Jump(JEQ_K, high_two, Next, Fails)],
    };
    let low_words = match condition.op {
        Op::Equal => vec![Jump(JEQ_K, low, Holds, Fails)],
        Op::NotEqual => vec![Jump(JEQ_K, low, Fails, Holds)],
        Op::Greater => vec![Jump(JGT_K, low, Holds, Fails)],
        Op::GreaterOrEqual => vec![Jump(JGE_K, low, Holds, Fails)],
        Op::Less => vec![Jump(JGE_K, low, Fails, Holds)],
        Op::LessOrEqual => vec![Jump(JGT_K, low, Fails, Holds)],
        Op::MaskedEqual => vec![Stmt(ALU_AND_K, low), Jump(JEQ_K, low_two, Holds, Fails)],
    };
    let mut steps = Vec::new();
    if !high_words.is_empty() {
        steps.push(Stmt(LD_W_ABS, high_offset));
        steps.extend(high_words);
    }
    steps.push(Stmt(LD_W_ABS, low_offset));
    steps.extend(low_words);
    steps
}

/// Runs `program` on one syscall, as the kernel would: what it returns.
#[cfg(test)]
pub fn evaluate(program: &[Instruction], arch: u32, number: u32, args: [u64; 6]) -> u32 {
    let mut data = Vec::new();
    data.extend(number.to_le_bytes());
    data.extend(arch.to_le_bytes());
    data.extend(0u64.to_le_bytes());
    for arg in args {
        data.extend(arg.to_le_bytes());
    }
    let word = |offset: u32| {
        let at = offset as usize;
        u32::from_le_bytes(data[at..at + 4].try_into().unwrap())
    };
    let (mut a, mut pc) = (0u32, 0usize);
    loop {
        let i = program[pc];
        pc += 1;
        let taken = |holds: bool| usize::from(if holds { i.jt } else { i.jf });
        match i.code {
            LD_W_ABS => a = word(i.k),
            ALU_AND_K => a &= i.k,
            JA => pc += i.k as usize,
            JEQ_K => pc += taken(a == i.k),
            JGT_K => pc += taken(a > i.k),
            JGE_K => pc += taken(a >= i.k),
            RET_K => return i.k,
            other => panic!("unexpected instruction {other:#x}"),
        }
    }
}
