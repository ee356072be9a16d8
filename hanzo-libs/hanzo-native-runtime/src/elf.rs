//! Just enough ELF to tell a program from a shared library, without loading either.
//!
//! `ET_EXEC` is a program. `ET_DYN` is either a position-independent executable or a shared
//! library: a PIE asks for a dynamic loader (`PT_INTERP`) or, when static (`-static-pie`),
//! carries `DF_1_PIE` in its dynamic section; anything else `ET_DYN` is a library. The file
//! is untrusted input read by the node, so every offset is bounds-checked and a malformed
//! header is an error, never a panic.

/// What an ELF file is, for the native runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ElfKind {
    /// Something the kernel can `execve` (ET_EXEC, or a PIE).
    Program,
    /// A shared library to `dlopen` (ET_DYN that is not a PIE).
    SharedLibrary,
}

/// Why a file that starts with the ELF magic cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ElfError {
    /// The header or a program header lies beyond the end of the file.
    #[error("malformed ELF file: {0}")]
    Malformed(&'static str),
    /// Relocatable objects (`.o`) and core dumps cannot run.
    #[error("ELF file of type {0} is neither an executable nor a shared library")]
    WrongType(u16),
    /// Built for another CPU.
    #[error("built for {found} (ELF machine {machine}), but this host is {host}")]
    ForeignMachine {
        /// The file's machine, by name where known.
        found: &'static str,
        /// Its `e_machine`.
        machine: u16,
        /// The host's architecture.
        host: &'static str,
    },
}

const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_FLAGS_1: u64 = 0x6fff_fffb;
const DF_1_PIE: u64 = 0x0800_0000;

/// Whether `bytes` start with the ELF magic.
pub(crate) fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

struct Reader<'a> {
    b: &'a [u8],
    big: bool,
    wide: bool,
}

impl Reader<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> Result<[u8; N], ElfError> {
        at.checked_add(N)
            .and_then(|end| self.b.get(at..end))
            .map(|s| s.try_into().expect("slice of length N"))
            .ok_or(ElfError::Malformed("truncated"))
    }
    fn u16(&self, at: usize) -> Result<u16, ElfError> {
        let b = self.bytes::<2>(at)?;
        Ok(if self.big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }
    fn u32(&self, at: usize) -> Result<u32, ElfError> {
        let b = self.bytes::<4>(at)?;
        Ok(if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }
    fn u64(&self, at: usize) -> Result<u64, ElfError> {
        let b = self.bytes::<8>(at)?;
        Ok(if self.big {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }
    /// A word: 8 bytes in ELF64, 4 in ELF32.
    fn word(&self, at: usize) -> Result<u64, ElfError> {
        if self.wide {
            self.u64(at)
        } else {
            self.u32(at).map(u64::from)
        }
    }
}

fn offset(v: u64) -> Result<usize, ElfError> {
    usize::try_from(v).map_err(|_| ElfError::Malformed("offset out of range"))
}

/// Classifies an ELF file and checks it was built for this host's CPU.
pub(crate) fn classify(bytes: &[u8]) -> Result<ElfKind, ElfError> {
    let (wide, big) = match (bytes.get(4), bytes.get(5)) {
        (Some(1), Some(e @ (1 | 2))) => (false, *e == 2),
        (Some(2), Some(e @ (1 | 2))) => (true, *e == 2),
        _ => return Err(ElfError::Malformed("unknown ELF class or byte order")),
    };
    let r = Reader { b: bytes, big, wide };
    let e_type = r.u16(16)?;
    let machine = r.u16(18)?;
    check_machine(machine, wide)?;
    let e_type = match e_type {
        ET_EXEC => return Ok(ElfKind::Program),
        ET_DYN => e_type,
        other => return Err(ElfError::WrongType(other)),
    };
    debug_assert_eq!(e_type, ET_DYN);
    // e_phoff, e_phentsize, e_phnum.
    let (phoff, phentsize, phnum) = if wide {
        (r.u64(32)?, r.u16(54)?, r.u16(56)?)
    } else {
        (u64::from(r.u32(28)?), r.u16(42)?, r.u16(44)?)
    };
    let min = if wide { 56 } else { 32 };
    if phnum > 0 && usize::from(phentsize) < min {
        return Err(ElfError::Malformed("program header entries too small"));
    }
    let mut dynamic = None;
    for i in 0..usize::from(phnum) {
        let at = offset(phoff)?
            .checked_add(i * usize::from(phentsize))
            .ok_or(ElfError::Malformed("program header offset overflows"))?;
        match r.u32(at)? {
            PT_INTERP => return Ok(ElfKind::Program),
            PT_DYNAMIC => {
                let (off, size) = if wide {
                    (r.u64(at + 8)?, r.u64(at + 32)?)
                } else {
                    (u64::from(r.u32(at + 4)?), u64::from(r.u32(at + 16)?))
                };
                dynamic = Some((offset(off)?, offset(size)?));
            }
            _ => {}
        }
    }
    // No loader: a shared library, unless a static PIE says it is one.
    if let Some((off, size)) = dynamic {
        let entry = if wide { 16 } else { 8 };
        let end = off.saturating_add(size).min(bytes.len());
        let mut at = off;
        while at + entry <= end {
            let tag = r.word(at)?;
            if tag == DT_NULL {
                break;
            }
            if tag == DT_FLAGS_1 && r.word(at + entry / 2)? & DF_1_PIE != 0 {
                return Ok(ElfKind::Program);
            }
            at += entry;
        }
    }
    Ok(ElfKind::SharedLibrary)
}

fn machine_name(m: u16) -> &'static str {
    match m {
        3 => "x86",
        40 => "arm",
        62 => "x86_64",
        183 => "aarch64",
        243 => "riscv",
        _ => "another architecture",
    }
}

/// The host's `(e_machine, ELF64?)`, where known.
fn host_machine() -> Option<(u16, bool)> {
    if cfg!(target_arch = "x86_64") {
        Some((62, true))
    } else if cfg!(target_arch = "aarch64") {
        Some((183, true))
    } else if cfg!(target_arch = "x86") {
        Some((3, false))
    } else if cfg!(target_arch = "arm") {
        Some((40, false))
    } else if cfg!(target_arch = "riscv64") {
        Some((243, true))
    } else {
        None
    }
}

fn check_machine(machine: u16, wide: bool) -> Result<(), ElfError> {
    match host_machine() {
        Some((m, w)) if m != machine || w != wide => Err(ElfError::ForeignMachine {
            found: machine_name(machine),
            machine,
            host: std::env::consts::ARCH,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(p: &str) -> Vec<u8> {
        std::fs::read(p).unwrap()
    }

    #[test]
    fn host_files() {
        // /bin/sh is a PIE (ET_DYN with PT_INTERP) on Debian; libc is a library with an
        // interpreter too (it can be run), so it reads as a program; libm is a plain library.
        assert_eq!(classify(&file("/bin/sh")), Ok(ElfKind::Program));
        let libm = [
            "/lib/x86_64-linux-gnu/libm.so.6",
            "/usr/lib/x86_64-linux-gnu/libm.so.6",
        ]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
        if let Some(p) = libm {
            assert_eq!(classify(&file(p)), Ok(ElfKind::SharedLibrary));
        }
    }

    #[test]
    fn malformed_headers_are_errors() {
        let sh = file("/bin/sh");
        for cut in [0, 5, 17, 20, 40, 64, 100] {
            let r = classify(&sh[..cut.min(sh.len())]);
            assert!(matches!(r, Err(ElfError::Malformed(_))), "cut {cut}: {r:?}");
        }
        let mut obj = sh.clone();
        obj[16] = 1; // ET_REL
        assert_eq!(classify(&obj), Err(ElfError::WrongType(1)));
        let mut foreign = sh.clone();
        foreign[18] = 0x15; // EM_PPC64 (21), little-endian u16
        foreign[19] = 0;
        assert!(matches!(classify(&foreign), Err(ElfError::ForeignMachine { .. })));
        let mut huge = sh;
        // e_phoff far past the end.
        huge[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(classify(&huge).is_err());
    }
}
