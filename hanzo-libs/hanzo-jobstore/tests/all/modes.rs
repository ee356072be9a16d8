//! The store holds every job's spec, secret `env` values included: its files are the
//! owner's only (0600), whether the store makes them or finds them looser.

use crate::util::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn files(path: &Path) -> Vec<std::path::PathBuf> {
    ["", "-wal", "-shm", ".lock"]
        .iter()
        .map(|s| {
            let mut p = path.as_os_str().to_os_string();
            p.push(s);
            p.into()
        })
        .collect()
}

#[tokio::test]
async fn the_database_its_wal_and_shm_are_private() {
    let (_dir, path) = db();
    {
        let (store, _) = open(&path);
        let mut s = spec(1);
        s.env.insert("SECRET".into(), "hunter2".into());
        store.submit(s).await.unwrap();
        for f in files(&path) {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
    }
    // Files an older version (or a umask of 022) left readable are tightened on open.
    // A clean close removed the WAL and the shared memory: an empty WAL stands in.
    std::fs::write(&files(&path)[1], b"").unwrap();
    for f in files(&path).iter().filter(|f| f.exists()) {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let (_store, _) = open(&path);
    for f in files(&path) {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
}
