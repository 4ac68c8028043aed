//! The examples are linked as docs/operating.md's *Release builds* says: their relative
//! relocations packed (`DT_RELR`, `build.rs`), so that no process of a cluster reads
//! hundreds of KiB of relocations at start. A linker that ignored the flag would leave
//! them unpacked without a word; this reads the example's own dynamic section.

use wix_cluster_suite::example_path;

/// `DT_RELASZ`: the bytes of the `RELA` relocations.
const DT_RELASZ: u64 = 8;
/// `DT_RELRSZ`: the bytes of the packed relative relocations.
const DT_RELRSZ: u64 = 35;
/// `PT_DYNAMIC`: the program header of the dynamic section.
const PT_DYNAMIC: u32 = 2;

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().expect("2 bytes"))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// The `(tag, value)` entries of the dynamic section of a 64-bit little-endian ELF file.
fn dynamic_entries(elf: &[u8]) -> Vec<(u64, u64)> {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!((elf[4], elf[5]), (2, 1), "not 64-bit little-endian");
    let phoff = u64_at(elf, 0x20) as usize;
    let phentsize = u16_at(elf, 0x36) as usize;
    let phnum = u16_at(elf, 0x38) as usize;
    let dynamic = (0..phnum)
        .map(|i| phoff + i * phentsize)
        .find(|&header| u32_at(elf, header) == PT_DYNAMIC)
        .expect("a dynamic section (a dynamically linked example)");
    let (offset, size) = (
        u64_at(elf, dynamic + 0x08) as usize,
        u64_at(elf, dynamic + 0x20) as usize,
    );
    elf[offset..offset + size]
        .chunks_exact(16)
        .map(|entry| (u64_at(entry, 0), u64_at(entry, 8)))
        .take_while(|(tag, _)| *tag != 0)
        .collect()
}

#[test]
#[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
fn the_examples_relative_relocations_are_packed() {
    let path = example_path("hello");
    let elf = std::fs::read(&path).expect("the hello example's binary");
    let entries = dynamic_entries(&elf);
    let size = |tag| entries.iter().find(|(t, _)| *t == tag).map(|(_, v)| *v);
    let packed = size(DT_RELRSZ).expect("DT_RELR: relative relocations packed");
    let unpacked = size(DT_RELASZ).unwrap_or(0);
    // Unpacked, the hello example's relocations took 350 KiB; packed, a few KiB.
    assert!(
        packed + unpacked < 64 * 1024,
        "{}: {packed} bytes of packed and {unpacked} of unpacked relocations",
        path.display()
    );
}
