//! `cargo xtask datasets fetch NAME`: download a dataset's files from their original hosts
//! (or a mirror) into `<root>/NAME/`, resuming partial downloads with HTTP ranges and
//! checking every file before it is renamed into place.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::catalog::{Dataset, SourceFile};
use super::store::{self, CheckedFile, Manifest};

/// What a fetch did.
#[derive(Debug)]
pub enum FetchOutcome {
    /// The folder already held the dataset as its manifest records it; nothing was done.
    AlreadyPresent(Manifest),
    /// The files were received, checked and put in place.
    Fetched(Manifest),
}

/// The HTTP client of the downloads: rustls with the webpki roots, redirects followed,
/// HTTP error statuses returned as responses (so 206 and 416 can be told apart), bounded
/// connect and read waits so a dead host does not hang the command.
pub fn http_agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .user_agent(concat!("cnnsplit-xtask/", env!("CARGO_PKG_VERSION")))
        .build();
    ureq::Agent::new_with_config(config)
}

/// `host[:port]` of an address, for messages.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#']).next().unwrap_or(rest)
}

/// Whether `e` means the host could not be reached at all (name lookup or connection).
fn is_unreachable(e: &ureq::Error) -> bool {
    use std::io::ErrorKind as K;
    match e {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Timeout(t) => matches!(t, ureq::Timeout::Resolve | ureq::Timeout::Connect),
        ureq::Error::Io(io) => matches!(
            io.kind(),
            K::ConnectionRefused
                | K::NotFound
                | K::HostUnreachable
                | K::NetworkUnreachable
                | K::NetworkDown
                | K::AddrNotAvailable
                | K::TimedOut
        ),
        _ => false,
    }
}

/// Whether the host part of `url` resolves to an address (port 80 or 443 when none given).
fn resolves(url: &str) -> bool {
    use std::net::ToSocketAddrs;
    let host = host_of(url);
    let with_port = if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host.to_string()
    } else if url.starts_with("https://") {
        format!("{host}:443")
    } else {
        format!("{host}:80")
    };
    with_port
        .to_socket_addrs()
        .map(|mut a| a.next().is_some())
        .unwrap_or(false)
}

/// The error of a request to `url` that got no response.
fn request_error(e: ureq::Error, url: &str, dataset: &str) -> anyhow::Error {
    // A failed name lookup reaches us as an I/O error of no particular kind; looking the
    // name up again tells it apart from other I/O failures.
    let unreachable = is_unreachable(&e) || (matches!(e, ureq::Error::Io(_)) && !resolves(url));
    if unreachable {
        anyhow::anyhow!(
            "could not reach {} to download {url} ({e}): this machine seems to be offline or \
             the host is down. If you have the files already, add them with `cargo xtask \
             datasets import {dataset} --from DIR`",
            host_of(url)
        )
    } else {
        anyhow::anyhow!("downloading {url}: {e}")
    }
}

/// Parses `Content-Range: bytes START-END/TOTAL` into `(START, TOTAL)` (TOTAL `None` for `*`).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start.trim().parse().ok()?, total))
}

/// Downloads `url` into `part`, continuing after the bytes `part` already holds with an
/// HTTP range request. Restarts from zero when the server ignores the range. Fails when the
/// transfer ends before the announced length; `part` is then kept for the next try.
/// `known_size`: the file's exact length where the catalog knows it; a part file of that
/// length is taken as complete without a request.
pub fn download(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    known_size: Option<u64>,
    dataset: &str,
) -> Result<()> {
    let mut have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if let Some(size) = known_size {
        if have == size {
            tracing::info!(file = %part.display(), "partial file already complete");
            return Ok(());
        }
        if have > size {
            tracing::warn!(file = %part.display(), "partial file longer than the file; restarting");
            std::fs::remove_file(part)
                .with_context(|| format!("cannot delete {}", part.display()))?;
            have = 0;
        }
    }
    let mut request = agent.get(url);
    if have > 0 {
        tracing::info!(url, from_byte = have, "resuming download");
        request = request.header("Range", format!("bytes={have}-"));
    } else {
        tracing::info!(url, "downloading");
    }
    let response = request.call().map_err(|e| request_error(e, url, dataset))?;
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_length: Option<u64> = header("content-length").and_then(|v| v.parse().ok());
    let (start, total) = match status {
        200 => {
            if have > 0 {
                tracing::info!(
                    url,
                    "the server sent the whole file; restarting the part file"
                );
            }
            (0, content_length)
        }
        206 => {
            let cr = header("content-range").unwrap_or_default();
            let Some((start, total)) = parse_content_range(&cr) else {
                bail!("{url}: partial response with an unreadable Content-Range {cr:?}");
            };
            if start != have {
                bail!(
                    "{url}: asked for the bytes from {have} on, the server sent them from {start}"
                );
            }
            (start, total.or(content_length.map(|n| n + start)))
        }
        416 if have > 0 => {
            // Nothing after the bytes held: the part file is the whole file (or longer than
            // it); the check that follows decides.
            tracing::info!(url, "server has no bytes after the partial file's end");
            return Ok(());
        }
        s => bail!("{url}: the server answered HTTP {s}"),
    };
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(start > 0)
        .truncate(start == 0)
        .open(part)
        .with_context(|| format!("cannot open {}", part.display()))?;
    let mut body = response.into_body().into_reader();
    let mut written = start;
    let mut buf = vec![0u8; 1 << 16];
    let mut next_log = start + (64 << 20);
    let broke_off = |written: u64, why: String| {
        anyhow::anyhow!(
            "the download of {url} broke off after {written}{} bytes ({why}); the partial \
             file {} is kept, run the command again to resume",
            total.map(|t| format!(" of {t}")).unwrap_or_default(),
            part.display()
        )
    };
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                out.flush().ok();
                return Err(broke_off(written, e.to_string()));
            }
        };
        out.write_all(&buf[..n])
            .with_context(|| format!("cannot write {}", part.display()))?;
        written += n as u64;
        if written >= next_log {
            tracing::info!(url, bytes = written, total, "downloading");
            next_log += 64 << 20;
        }
    }
    out.sync_all()
        .with_context(|| format!("cannot write {}", part.display()))?;
    if let Some(t) = total {
        if written != t {
            return Err(broke_off(written, "connection closed early".to_string()));
        }
    }
    Ok(())
}

/// The exact length of `file` when every accepted form states the same one.
fn known_size(file: &SourceFile) -> Option<u64> {
    let first = file.accepted.first()?.size?;
    file.accepted
        .iter()
        .all(|c| c.size == Some(first))
        .then_some(first)
}

/// The manifest of `dir` when it describes `ds` and every file it lists is there with its
/// recorded size.
pub fn complete_manifest(ds: &Dataset, dir: &Path) -> Option<Manifest> {
    let m = store::read_manifest(dir).ok().flatten()?;
    (m.dataset == ds.name && store::check_stored(dir, &m, false).is_empty()).then_some(m)
}

/// Fetches `ds` into `root/<name>/`: each source file from its original address, or from
/// `mirror/<file name>` when `mirror` is given; checked against the catalog before it is put
/// in place, then unpacked and recorded in the manifest. A folder whose manifest shows the
/// dataset complete is left alone.
pub fn fetch(ds: &Dataset, root: &Path, mirror: Option<&str>) -> Result<FetchOutcome> {
    let dir = root.join(&ds.name);
    if let Some(m) = complete_manifest(ds, &dir) {
        return Ok(FetchOutcome::AlreadyPresent(m));
    }
    let mut urls = Vec::new();
    for f in &ds.files {
        let url = match (mirror, &f.url) {
            (Some(m), _) => format!("{}/{}", m.trim_end_matches('/'), f.name),
            (None, Some(u)) => u.clone(),
            (None, None) => bail!(
                "{}",
                ds.no_host_note
                    .clone()
                    .unwrap_or_else(|| format!("{} has no download address", f.name))
            ),
        };
        urls.push(url);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let agent = http_agent();
    let mut checked: Vec<CheckedFile> = Vec::new();
    for (f, url) in ds.files.iter().zip(&urls) {
        let dest = dir.join(&f.name);
        if dest.exists() {
            // Left by an earlier run that stopped before unpacking or writing the manifest,
            // or put there by hand: keep it if it is right, never overwrite it silently.
            let found = store::digest_file(&dest)?;
            let c = store::check(&dest.display().to_string(), f, &found)
                .map_err(|e| anyhow::anyhow!("{e}; remove the file and fetch again"))?;
            checked.push(c);
            continue;
        }
        let part = store::part_path(&dest);
        download(&agent, url, &part, known_size(f), &ds.name)?;
        checked.push(store::verify_and_place(&part, &dest, f, url)?);
    }
    let origin = mirror
        .map(str::to_string)
        .unwrap_or_else(|| "original hosts".to_string());
    let m = store::finish_dataset(ds, &dir, checked, "fetch", &origin)?;
    Ok(FetchOutcome::Fetched(m))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::datasets::catalog::{Checksum, Unpack};
    use crate::datasets::listing::{presence, Presence};
    use crate::datasets::store::{digest_file, read_manifest};

    /// What the test server serves and how, and the requests it saw.
    #[derive(Default)]
    struct Served {
        /// Bodies by path (without the leading `/`).
        files: HashMap<String, Vec<u8>>,
        /// For the next response only: send this many body bytes, then close.
        cut_next: Option<usize>,
        /// Answer range requests with the whole file (status 200).
        ignore_range: bool,
        /// `(path, Range header)` of every request.
        log: Vec<(String, Option<String>)>,
    }

    /// A one-connection-at-a-time HTTP/1.1 server on 127.0.0.1; returns its base address.
    fn serve(state: Arc<Mutex<Served>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                answer(stream, &state);
            }
        });
        format!("http://{addr}")
    }

    fn answer(mut s: TcpStream, state: &Mutex<Served>) {
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&req).to_string();
        let path = text
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .trim_start_matches('/')
            .to_string();
        let range = text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("range")
                .then(|| v.trim().to_string())
        });
        let mut st = state.lock().unwrap();
        st.log.push((path.clone(), range.clone()));
        let Some(body) = st.files.get(&path).cloned() else {
            let _ = s.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        };
        let start = match (&range, st.ignore_range) {
            (Some(r), false) => r
                .strip_prefix("bytes=")
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0),
            _ => 0,
        };
        let cut = st.cut_next.take();
        drop(st);
        let len = body.len();
        let head = if start >= len && start > 0 {
            format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
        } else if start > 0 {
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{len}\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                len - 1,
                len - start
            )
        } else {
            format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
        };
        let _ = s.write_all(head.as_bytes());
        if start < len {
            let payload = &body[start..];
            let payload = &payload[..cut.unwrap_or(payload.len()).min(payload.len())];
            let _ = s.write_all(payload);
        }
        let _ = s.flush();
        let _ = s.shutdown(std::net::Shutdown::Both);
    }

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// A dataset of two files: `a.bin` checked by SHA-256 alone (no size), `b.bin` by size
    /// and MD5.
    fn two_file_set(a: &[u8], b: &[u8]) -> Dataset {
        let da = crate::datasets::store::HashingWriter::new(std::io::sink());
        let (da, _) = {
            let mut w = da;
            w.write_all(a).unwrap();
            w.finish()
        };
        let mut w = crate::datasets::store::HashingWriter::new(std::io::sink());
        w.write_all(b).unwrap();
        let (db, _) = w.finish();
        Dataset {
            name: "test-set".into(),
            cli_name: "test-set".into(),
            files: vec![
                SourceFile {
                    name: "a.bin".into(),
                    url: Some("http://unused.invalid/a.bin".into()),
                    accepted: vec![Checksum {
                        origin: "test".into(),
                        size: None,
                        sha256: Some(da.sha256),
                        md5: None,
                    }],
                },
                SourceFile {
                    name: "b.bin".into(),
                    url: Some("http://unused.invalid/b.bin".into()),
                    accepted: vec![Checksum {
                        origin: "test".into(),
                        size: Some(db.bytes),
                        sha256: None,
                        md5: Some(db.md5),
                    }],
                },
            ],
            unpack: Unpack::Keep,
            unpacked: None,
            no_host_note: None,
        }
    }

    fn server_with(files: &[(&str, Vec<u8>)]) -> (Arc<Mutex<Served>>, String) {
        let state = Arc::new(Mutex::new(Served::default()));
        for (name, body) in files {
            state
                .lock()
                .unwrap()
                .files
                .insert(name.to_string(), body.clone());
        }
        let base = serve(state.clone());
        (state, base)
    }

    #[test]
    fn content_range_and_host_parsing() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
        assert_eq!(host_of("http://127.0.0.1:8080/a/b"), "127.0.0.1:8080");
        assert_eq!(
            host_of("https://www.cs.toronto.edu/~kriz/x"),
            "www.cs.toronto.edu"
        );
    }

    #[test]
    fn fetch_checks_and_places_files_from_a_local_server() {
        let (a, b) = (bytes(5000, 1), bytes(3000, 2));
        let ds = two_file_set(&a, &b);
        let (state, base) = server_with(&[("a.bin", a.clone()), ("b.bin", b.clone())]);
        let root = tempfile::tempdir().unwrap();
        let FetchOutcome::Fetched(m) = fetch(&ds, root.path(), Some(&base)).unwrap() else {
            panic!("expected a fetch");
        };
        let dir = root.path().join("test-set");
        assert_eq!(std::fs::read(dir.join("a.bin")).unwrap(), a);
        assert_eq!(std::fs::read(dir.join("b.bin")).unwrap(), b);
        assert!(!dir.join("a.bin.part").exists() && !dir.join("b.bin.part").exists());
        let checks: Vec<&str> = m.checked.iter().map(|c| c.check.as_str()).collect();
        assert_eq!(checks, ["sha256", "md5"]);
        assert_eq!(m.source, "fetch");
        assert_eq!(m.origin, base);
        assert_eq!(read_manifest(&dir).unwrap().unwrap(), m);
        assert_eq!(
            state.lock().unwrap().log,
            vec![("a.bin".to_string(), None), ("b.bin".to_string(), None)]
        );
        assert_eq!(
            presence(&ds, root.path(), true),
            Presence::Present {
                check: "md5".into(),
                source: "fetch".into(),
                rehashed: true
            }
        );
        // A second fetch finds the dataset complete and sends no request.
        assert!(matches!(
            fetch(&ds, root.path(), Some(&base)).unwrap(),
            FetchOutcome::AlreadyPresent(_)
        ));
        assert_eq!(state.lock().unwrap().log.len(), 2);
    }

    #[test]
    fn fetch_refuses_a_file_whose_checksum_differs() {
        let (a, b) = (bytes(5000, 1), bytes(3000, 2));
        let ds = two_file_set(&a, &b);
        let wrong = bytes(5000, 9);
        let (_state, base) = server_with(&[("a.bin", wrong.clone()), ("b.bin", b)]);
        let root = tempfile::tempdir().unwrap();
        let err = format!("{:#}", fetch(&ds, root.path(), Some(&base)).unwrap_err());
        let want = ds.files[0].accepted[0].sha256.clone().unwrap();
        let mut w = crate::datasets::store::HashingWriter::new(std::io::sink());
        w.write_all(&wrong).unwrap();
        let found = w.finish().0.sha256;
        assert!(
            err.contains(&format!("{base}/a.bin: a.bin does not match")),
            "{err}"
        );
        assert!(
            err.contains(&format!("expected SHA-256 {want} (test)")),
            "{err}"
        );
        assert!(err.contains(&format!("SHA-256 {found}")), "{err}");
        let dir = root.path().join("test-set");
        assert!(
            err.contains(&format!("deleted {}", dir.join("a.bin.part").display())),
            "{err}"
        );
        assert!(!dir.join("a.bin.part").exists());
        assert!(!dir.join("a.bin").exists());
        assert_eq!(presence(&ds, root.path(), false), Presence::Absent);
    }

    #[test]
    fn truncated_transfer_keeps_the_part_file_and_the_next_fetch_resumes() {
        let (a, b) = (bytes(5000, 1), bytes(3000, 2));
        let ds = two_file_set(&a, &b);
        let (state, base) = server_with(&[("a.bin", a.clone()), ("b.bin", b.clone())]);
        state.lock().unwrap().cut_next = Some(1200);
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("test-set");
        let err = format!("{:#}", fetch(&ds, root.path(), Some(&base)).unwrap_err());
        assert!(
            err.contains(&format!(
                "the download of {base}/a.bin broke off after 1200 of 5000 bytes"
            )),
            "{err}"
        );
        assert!(
            err.contains("is kept, run the command again to resume"),
            "{err}"
        );
        assert_eq!(
            std::fs::metadata(dir.join("a.bin.part")).unwrap().len(),
            1200
        );
        assert_eq!(
            presence(&ds, root.path(), false),
            Presence::Partial(vec![("a.bin.part".to_string(), 1200)])
        );
        // b.bin is cut too, after the resumed a.bin arrived whole.
        state.lock().unwrap().cut_next = None;
        let fetched = fetch(&ds, root.path(), Some(&base)).unwrap();
        assert!(matches!(fetched, FetchOutcome::Fetched(_)));
        assert_eq!(std::fs::read(dir.join("a.bin")).unwrap(), a);
        assert_eq!(std::fs::read(dir.join("b.bin")).unwrap(), b);
        let log = state.lock().unwrap().log.clone();
        assert_eq!(
            log,
            vec![
                ("a.bin".to_string(), None),
                ("a.bin".to_string(), Some("bytes=1200-".to_string())),
                ("b.bin".to_string(), None),
            ]
        );
    }

    #[test]
    fn resume_handles_complete_wrong_and_unranged_part_files() {
        let (a, b) = (bytes(5000, 1), bytes(3000, 2));
        let ds = two_file_set(&a, &b);
        let (state, base) = server_with(&[("a.bin", a.clone()), ("b.bin", b.clone())]);
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("test-set");
        std::fs::create_dir_all(&dir).unwrap();

        // A complete a.bin.part (a.bin has no recorded size, so it is asked for): the server
        // answers 416 and the part file passes its check. b.bin.part holds the right length
        // (the recorded size) so no request is sent for it.
        std::fs::write(dir.join("a.bin.part"), &a).unwrap();
        std::fs::write(dir.join("b.bin.part"), &b).unwrap();
        fetch(&ds, root.path(), Some(&base)).unwrap();
        assert_eq!(
            state.lock().unwrap().log,
            vec![("a.bin".to_string(), Some("bytes=5000-".to_string()))]
        );
        assert_eq!(std::fs::read(dir.join("a.bin")).unwrap(), a);

        // A part file with wrong leading bytes: the resumed file fails its check, the part
        // file is deleted, and the next fetch starts from zero.
        let root2 = tempfile::tempdir().unwrap();
        let dir2 = root2.path().join("test-set");
        std::fs::create_dir_all(&dir2).unwrap();
        std::fs::write(dir2.join("a.bin.part"), bytes(700, 77)).unwrap();
        let err = format!("{:#}", fetch(&ds, root2.path(), Some(&base)).unwrap_err());
        assert!(
            err.contains("a.bin does not match its recorded checksum"),
            "{err}"
        );
        assert!(!dir2.join("a.bin.part").exists());
        fetch(&ds, root2.path(), Some(&base)).unwrap();
        assert_eq!(std::fs::read(dir2.join("a.bin")).unwrap(), a);

        // A server that ignores ranges sends the whole file: the part file restarts.
        let root3 = tempfile::tempdir().unwrap();
        let dir3 = root3.path().join("test-set");
        std::fs::create_dir_all(&dir3).unwrap();
        std::fs::write(dir3.join("a.bin.part"), bytes(700, 77)).unwrap();
        state.lock().unwrap().ignore_range = true;
        fetch(&ds, root3.path(), Some(&base)).unwrap();
        assert_eq!(std::fs::read(dir3.join("a.bin")).unwrap(), a);
        assert_eq!(digest_file(&dir3.join("b.bin")).unwrap().bytes, 3000);
    }

    #[test]
    fn unreachable_host_and_http_errors_are_reported() {
        let (a, b) = (bytes(50, 1), bytes(30, 2));
        let ds = two_file_set(&a, &b);
        // A port nothing listens on: bind one, then free it.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let root = tempfile::tempdir().unwrap();
        let err = format!(
            "{:#}",
            fetch(&ds, root.path(), Some(&format!("http://127.0.0.1:{port}"))).unwrap_err()
        );
        assert!(
            err.contains(&format!(
                "could not reach 127.0.0.1:{port} to download http://127.0.0.1:{port}/a.bin"
            )),
            "{err}"
        );
        assert!(err.contains("seems to be offline"), "{err}");
        assert!(
            err.contains("add them with `cargo xtask datasets import test-set --from DIR`"),
            "{err}"
        );
        assert!(!root.path().join("test-set/a.bin.part").exists());

        let (_state, base) = server_with(&[("b.bin", b)]);
        let err = format!("{:#}", fetch(&ds, root.path(), Some(&base)).unwrap_err());
        assert_eq!(err, format!("{base}/a.bin: the server answered HTTP 404"));
    }

    #[test]
    fn a_tar_gz_archive_is_unpacked_recorded_and_removed() {
        let (x, y) = (bytes(4000, 3), bytes(100, 4));
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (name, data) in [("batches/x.bin", &x), ("batches/y.bin", &y)] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, name, data.as_slice()).unwrap();
        }
        let archive = tar.into_inner().unwrap().finish().unwrap();
        let mut ds = two_file_set(&archive, &[]);
        ds.files.truncate(1);
        ds.files[0].name = "set.tar.gz".into();
        ds.unpack = Unpack::TarGz;
        let (_state, base) = server_with(&[("set.tar.gz", archive)]);
        let root = tempfile::tempdir().unwrap();
        let FetchOutcome::Fetched(m) = fetch(&ds, root.path(), Some(&base)).unwrap() else {
            panic!("expected a fetch");
        };
        let dir = root.path().join("test-set");
        assert_eq!(std::fs::read(dir.join("batches/x.bin")).unwrap(), x);
        assert_eq!(std::fs::read(dir.join("batches/y.bin")).unwrap(), y);
        assert!(!dir.join("set.tar.gz").exists() && !dir.join(".unpack.tmp").exists());
        let paths: Vec<(&str, u64)> = m.files.iter().map(|f| (f.path.as_str(), f.bytes)).collect();
        assert_eq!(paths, [("batches/x.bin", 4000), ("batches/y.bin", 100)]);
        assert!(matches!(
            presence(&ds, root.path(), true),
            Presence::Present { .. }
        ));
        // Same size, other bytes: only the rehash notices.
        let mut changed = x.clone();
        changed[10] ^= 1;
        std::fs::write(dir.join("batches/x.bin"), &changed).unwrap();
        assert!(matches!(
            presence(&ds, root.path(), false),
            Presence::Present { .. }
        ));
        let Presence::Damaged(problems) = presence(&ds, root.path(), true) else {
            panic!("expected damage");
        };
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("batches/x.bin: SHA-256 "),
            "{problems:?}"
        );
        std::fs::remove_file(dir.join("batches/y.bin")).unwrap();
        assert_eq!(
            presence(&ds, root.path(), false),
            Presence::Damaged(vec!["batches/y.bin missing".to_string()])
        );
    }
}
