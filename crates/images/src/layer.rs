//! Layer tarballs that are the same bytes for the same files: entries sorted by path, numeric
//! owners without names, every time clamped to an epoch, no device nodes.
//!
//! A [`Layer`] is an in-memory tree keyed by relative path (`usr/bin/x`, no `./`, no trailing
//! `/`); [`Layer::write`] serialises it and returns the blob's digest and size. Parents always
//! sort before their children, and a hard link is always written after the file it points to
//! (the first path of a link group in sort order carries the data).
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    /// A hard link to another path of the same layer.
    Hardlink(String),
}

/// One path of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Permission bits (and setuid/setgid/sticky).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch, already clamped.
    pub mtime: u64,
}

impl Entry {
    /// A root-owned folder.
    pub fn dir(mtime: u64) -> Self {
        Self { kind: Kind::Dir, mode: 0o755, uid: 0, gid: 0, mtime }
    }

    /// A root-owned file.
    pub fn file(data: Vec<u8>, mode: u32, mtime: u64) -> Self {
        Self { kind: Kind::File(data), mode, uid: 0, gid: 0, mtime }
    }
}

/// The paths of one layer, sorted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Layer {
    entries: BTreeMap<String, Entry>,
}

/// A written blob: `sha256:<hex>` and its length.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
}

/// `usr/bin/x` from `./usr/bin/x`, `/usr/bin/x/` or `usr/bin/x`; `None` for the root itself.
pub fn relative(path: &str) -> Option<String> {
    let p = path.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/');
    if p.is_empty() || p == "." { None } else { Some(p.to_string()) }
}

impl Layer {
    /// Adds or replaces `path` (any form [`relative`] takes).
    pub fn insert(&mut self, path: &str, entry: Entry) {
        if let Some(p) = relative(path) {
            self.entries.insert(p, entry);
        }
    }

    /// Adds `path` and every missing parent folder (root-owned, 0755).
    pub fn insert_with_parents(&mut self, path: &str, entry: Entry) {
        let Some(p) = relative(path) else { return };
        let mtime = entry.mtime;
        let mut parent = String::new();
        for part in p.split('/').collect::<Vec<_>>().iter().rev().skip(1).rev() {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            self.entries.entry(parent.clone()).or_insert_with(|| Entry::dir(mtime));
        }
        self.entries.insert(p, entry);
    }

    /// The entry at `path`.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        relative(path).and_then(|p| self.entries.get(&p))
    }

    /// Paths in write order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Bytes of regular files (what the layer takes unpacked, links and folders aside).
    pub fn content_size(&self) -> u64 {
        self.entries.values().map(|e| if let Kind::File(d) = &e.kind { d.len() as u64 } else { 0 }).sum()
    }

    /// Makes every hard-link group point at its first path in sort order, so links follow
    /// their target in the tarball.
    fn canonical_hardlinks(&mut self) -> Result<()> {
        let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (path, e) in &self.entries {
            if let Kind::Hardlink(target) = &e.kind {
                groups.entry(target.clone()).or_default().insert(path.clone());
            }
        }
        for (target, links) in groups {
            let first = links.first().cloned().filter(|l| *l < target);
            let Some(first) = first else { continue };
            let data = self
                .entries
                .get(&target)
                .filter(|e| matches!(e.kind, Kind::File(_)))
                .cloned()
                .ok_or_else(|| Error::Layer(format!("hard link {first} -> {target}: no such file")))?;
            self.entries.insert(first.clone(), data);
            for path in links.iter().filter(|l| **l != first).chain(std::iter::once(&target)) {
                if let Some(e) = self.entries.get_mut(path) {
                    e.kind = Kind::Hardlink(first.clone());
                }
            }
        }
        Ok(())
    }

    /// Writes the layer as a tarball to `out`.
    pub fn write(mut self, out: impl Write) -> Result<Blob> {
        self.canonical_hardlinks()?;
        let mut hashed = HashingWriter::new(out);
        {
            let mut tar = tar::Builder::new(&mut hashed);
            for (path, e) in &self.entries {
                append(&mut tar, path, e)?;
            }
            tar.finish()?;
        }
        hashed.finish()
    }
}

fn header(e: &Entry, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(e.mode);
    h.set_uid(e.uid);
    h.set_gid(e.gid);
    h.set_mtime(e.mtime);
    h.set_size(size);
    h
}

fn append<W: Write>(tar: &mut tar::Builder<W>, path: &str, e: &Entry) -> Result<()> {
    match &e.kind {
        Kind::Dir => {
            let mut h = header(e, tar::EntryType::Directory, 0);
            tar.append_data(&mut h, format!("{path}/"), std::io::empty())?;
        }
        Kind::File(data) => {
            let mut h = header(e, tar::EntryType::Regular, data.len() as u64);
            tar.append_data(&mut h, path, data.as_slice())?;
        }
        Kind::Symlink(target) => {
            let mut h = header(e, tar::EntryType::Symlink, 0);
            tar.append_link(&mut h, path, target)?;
        }
        Kind::Hardlink(target) => {
            let mut h = header(e, tar::EntryType::Link, 0);
            tar.append_link(&mut h, path, target)?;
        }
    }
    Ok(())
}

/// Passes bytes through while hashing and counting them.
pub struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, hash: Sha256::new(), len: 0 }
    }

    /// Flushes and returns what was written.
    pub fn finish(mut self) -> Result<Blob> {
        self.inner.flush()?;
        Ok(Blob { digest: format!("sha256:{:x}", self.hash.finalize()), size: self.len })
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// `sha256:<hex>` of everything `r` yields.
pub fn digest_reader(mut r: impl Read) -> Result<Blob> {
    let mut w = HashingWriter::new(std::io::sink());
    std::io::copy(&mut r, &mut w)?;
    w.finish()
}

/// What to keep of a root file system tarball.
pub struct Normalize {
    /// Times later than this are clamped to it.
    pub epoch: u64,
    /// Paths (relative) dropped with everything under them; `dev/` (trailing slash) drops what
    /// is under `dev` and keeps the folder.
    pub drop: &'static [&'static str],
}

/// Reads a root file system tarball (mmdebstrap's) into a layer: device nodes and FIFOs
/// dropped (the runtime makes `/dev`), times clamped, owners kept, extended attributes refused
/// (a layer would silently lose them).
pub fn from_tar(input: impl Read, opts: &Normalize) -> Result<Layer> {
    let mut layer = Layer::default();
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.to_string_lossy().into_owned();
        let Some(path) = relative(&raw) else { continue };
        if opts.drop.iter().any(|d| dropped(&path, d)) {
            continue;
        }
        if let Some(exts) = entry.pax_extensions()? {
            for ext in exts {
                let ext = ext?;
                if ext.key().is_ok_and(|k| k.starts_with("SCHILY.xattr.")) {
                    return Err(Error::Layer(format!("{path}: extended attributes are not supported")));
                }
            }
        }
        let (kind, size) = (entry.header().entry_type(), entry.header().size()?);
        let kind = match kind {
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                entry.read_to_end(&mut data)?;
                Kind::File(data)
            }
            tar::EntryType::Symlink => Kind::Symlink(link_name(&entry, &path)?),
            tar::EntryType::Link => Kind::Hardlink(
                relative(&link_name(&entry, &path)?)
                    .ok_or_else(|| Error::Layer(format!("{path}: hard link to the root")))?,
            ),
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => continue,
            other => return Err(Error::Layer(format!("{path}: unsupported tar entry type {other:?}"))),
        };
        let h = entry.header();
        let e = Entry {
            kind,
            mode: h.mode()? & 0o7777,
            uid: h.uid()?,
            gid: h.gid()?,
            mtime: h.mtime()?.min(opts.epoch),
        };
        layer.entries.insert(path, e);
    }
    Ok(layer)
}

fn dropped(path: &str, pattern: &str) -> bool {
    match pattern.strip_suffix('/') {
        Some(dir) => path.starts_with(pattern) && path.len() > dir.len() + 1,
        None => path == pattern || path.strip_prefix(pattern).is_some_and(|rest| rest.starts_with('/')),
    }
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>, path: &str) -> Result<String> {
    entry
        .link_name()?
        .map(|l| l.to_string_lossy().into_owned())
        .ok_or_else(|| Error::Layer(format!("{path}: link without a target")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(layer: Layer) -> (Blob, Vec<u8>) {
        let mut out = Vec::new();
        let blob = layer.write(&mut out).unwrap();
        (blob, out)
    }

    fn names(tarball: &[u8]) -> Vec<(String, tar::EntryType, Option<String>)> {
        let mut a = tar::Archive::new(tarball);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let link = e.link_name().unwrap().map(|l| l.display().to_string());
                (e.path().unwrap().display().to_string(), e.header().entry_type(), link)
            })
            .collect()
    }

    #[test]
    fn the_same_files_inserted_in_any_order_give_the_same_bytes() {
        let mut a = Layer::default();
        a.insert_with_parents("/usr/local/bin/x", Entry::file(b"x".to_vec(), 0o755, 7));
        a.insert_with_parents("/etc/y", Entry::file(b"y".to_vec(), 0o644, 7));
        let mut b = Layer::default();
        b.insert_with_parents("etc/y", Entry::file(b"y".to_vec(), 0o644, 7));
        b.insert_with_parents("./usr/local/bin/x", Entry::file(b"x".to_vec(), 0o755, 7));
        let (ba, ta) = written(a);
        let (bb, tb) = written(b);
        assert_eq!(ba, bb);
        assert_eq!(ta, tb);
        assert_eq!(ba.size, ta.len() as u64);
        assert_eq!(ba.digest, digest(&ta));
    }

    #[test]
    fn parents_come_before_children_and_folders_end_with_a_slash() {
        let mut l = Layer::default();
        l.insert_with_parents("/usr/local/bin/x", Entry::file(vec![], 0o755, 0));
        l.insert("/usr-x", Entry::dir(0));
        let (_, t) = written(l);
        let got: Vec<String> = names(&t).into_iter().map(|n| n.0).collect();
        // Byte order: `usr-x` sorts between `usr` and `usr/local`; parents still come first.
        assert_eq!(got, ["usr/", "usr-x/", "usr/local/", "usr/local/bin/", "usr/local/bin/x"]);
    }

    #[test]
    fn a_hard_link_that_sorts_before_its_target_becomes_the_target() {
        let mut l = Layer::default();
        l.insert("b", Entry::file(b"data".to_vec(), 0o755, 0));
        l.insert("a", Entry { kind: Kind::Hardlink("b".into()), ..Entry::dir(0) });
        l.insert("c", Entry { kind: Kind::Hardlink("b".into()), ..Entry::dir(0) });
        let (_, t) = written(l);
        let got = names(&t);
        assert_eq!(got[0], ("a".into(), tar::EntryType::Regular, None));
        assert_eq!(got[1], ("b".into(), tar::EntryType::Link, Some("a".into())));
        assert_eq!(got[2], ("c".into(), tar::EntryType::Link, Some("a".into())));
    }

    #[test]
    fn reading_a_root_file_system_drops_devices_and_clamps_times() {
        let header = || {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mode(0o755);
            h.set_mtime(0);
            h
        };
        let mut src = tar::Builder::new(Vec::new());
        let mut h = header();
        h.set_entry_type(tar::EntryType::Char);
        h.set_mode(0o666);
        h.set_mtime(5);
        h.set_size(0);
        src.append_data(&mut h, "./dev/null", std::io::empty()).unwrap();
        let mut h = header();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(42);
        h.set_mtime(2_000_000_000);
        h.set_size(2);
        src.append_data(&mut h, "./etc/x", &b"hi"[..]).unwrap();
        src.append_data(&mut h.clone(), "./var/cache/junk/y", &b"hi"[..]).unwrap();
        src.append_data(&mut h.clone(), "./var/cache/junky", &b"hi"[..]).unwrap();
        let mut d = header();
        d.set_entry_type(tar::EntryType::Directory);
        d.set_size(0);
        src.append_data(&mut d, "./dev/", std::io::empty()).unwrap();
        src.append_data(&mut d.clone(), "./dev/pts/", std::io::empty()).unwrap();
        let bytes = src.into_inner().unwrap();
        let opts = Normalize { epoch: 1000, drop: &["var/cache/junk", "dev/"] };
        let layer = from_tar(bytes.as_slice(), &opts).unwrap();
        assert_eq!(layer.paths().collect::<Vec<_>>(), ["dev", "etc/x", "var/cache/junky"]);
        let e = layer.get("etc/x").unwrap();
        assert_eq!((e.mtime, e.uid, e.mode), (1000, 42, 0o644));
    }
}
