//! Fuzz target for the backup reader. Two inputs in one:
//! - the raw bytes as a backup file, through the keyless scanner and the keyed reader;
//! - the bytes as edits (offset, xor) applied to a valid backup made at start-up, so that
//!   mutations reach chunk decryption and the manifest checks behind a valid key envelope.
//! Nothing may panic, and no edited backup may verify.
#![no_main]

use drover_adapters::backup::{self, BackupError, FileKeyProvider, LocalLocation, Location, NoProgress, PendingWrite};
use libfuzzer_sys::fuzz_target;
use std::io::{Cursor, Read};
use std::sync::OnceLock;

struct Fixture {
    _dir: tempfile::TempDir,
    key: FileKeyProvider,
    valid: Vec<u8>,
    rt: tokio::runtime::Runtime,
}

struct Memory(Vec<u8>);

impl Location for Memory {
    fn describe(&self) -> String {
        "memory".into()
    }
    fn open(&self) -> Result<Box<dyn Read + Send>, BackupError> {
        Ok(Box::new(Cursor::new(self.0.clone())))
    }
    fn create(&self, _: bool) -> Result<Box<dyn PendingWrite>, BackupError> {
        Err(BackupError::Invalid("read-only".into()))
    }
    fn list(&self) -> Result<Vec<Box<dyn Location>>, BackupError> {
        Ok(Vec::new())
    }
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tmp");
        let key_path = dir.path().join("fuzz.key");
        backup::generate_file_key(&key_path, false).expect("key");
        let key = FileKeyProvider::new(&key_path);
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("rt");
        let out = dir.path().join("valid.dbk");
        let mut opts = backup::CreateOptions::new("fuzz", time::OffsetDateTime::UNIX_EPOCH);
        opts.chunk_size = 64;
        let mut input: &[u8] = &[7u8; 200];
        rt.block_on(backup::create(&mut input, &LocalLocation::new(&out), &key, &opts, &NoProgress)).expect("create");
        let valid = std::fs::read(&out).expect("read");
        Fixture { _dir: dir, key, valid, rt }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    // Raw bytes as a backup.
    let raw = Memory(data.to_vec());
    let _ = f.rt.block_on(backup::verify(&raw, None, None, &NoProgress));
    let _ = f.rt.block_on(backup::verify(&raw, Some(&f.key), None, &NoProgress));

    // Bytes as edits of a valid backup: pairs (offset, xor), and a final odd byte truncates.
    let mut edited = f.valid.clone();
    let mut changed = false;
    for pair in data.chunks(3) {
        match pair {
            [hi, lo, x] if *x != 0 => {
                let at = (usize::from(*hi) << 8 | usize::from(*lo)) % edited.len();
                edited[at] ^= x;
                changed = true;
            }
            [cut] => {
                let len = usize::from(*cut) % edited.len();
                edited.truncate(len);
                changed = true;
            }
            _ => {}
        }
    }
    if changed && edited != f.valid {
        let r = f.rt.block_on(backup::verify(&Memory(edited), Some(&f.key), None, &NoProgress));
        assert!(r.is_err(), "an edited backup verified");
    }
});
