//! Zero-copy sending of hot segments (Linux).
//!
//! Profiling the gateway under load showed over half of the node's time in the kernel
//! copying response bodies from user memory into sockets; nginx avoids that copy with
//! `sendfile(2)`. We do the same without giving up hyper: the hot cache keeps each large
//! segment in an unnamed file (`O_TMPFILE` in the data directory) mapped read-only, and
//! the HTTP server's sockets are wrapped so that a write whose bytes lie in such a mapping
//! is sent with `sendfile` from the file, handing its page-cache pages to the socket by
//! reference. Every other byte is written as usual.
//!
//! ```text
//!   HotCache::insert ─▶ file_backed(bytes) ─▶ unnamed file ─ mmap, read-only ─▶ Bytes ─▶ hyper
//!                              │ register: address range → file                        │
//!                              ▼                                                       ▼
//!                         REGIONS ◀──── find(slice address) ──── SendfileStream::poll_write_vectored
//!                                                                   ├─ in a region: sendfile(socket, file)
//!                                                                   └─ otherwise:   sendmsg(socket, slices)
//! ```
//!
//! Why it is sound: a slice hyper asks us to write borrows the `Bytes` that owns the
//! mapping, so the mapping, its registration and its file are alive for the whole call;
//! a mapping is unregistered before it is unmapped, so an address found in the registry
//! always belongs to a live mapping of that file. The file has no name, so no other
//! process can open it, and we write it only before mapping it: the pages the kernel still
//! references after a send never change.
//!
//! Why a file on disk rather than a memfd: shared memory is cached in 4 KiB pages, and
//! looking each one up made `sendfile` from a memfd reach only 0.78 of nginx's throughput;
//! the page cache of ext4 and XFS uses large folios, as it does for the files nginx sends.
#![allow(unsafe_code)]

use std::{
    collections::BTreeMap,
    fs::File,
    io::{self, IoSlice, Write},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::fs::OpenOptionsExt,
    },
    path::Path,
    pin::Pin,
    sync::{
        LazyLock, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use tokio::{
    io::{AsyncRead, AsyncWrite, Interest, ReadBuf},
    net::TcpStream,
};

/// Live file-backed mappings, by start address: (length, file descriptor).
static REGIONS: LazyLock<RwLock<BTreeMap<usize, (usize, RawFd)>>> = LazyLock::new(Default::default);

/// Bytes sent with `sendfile` since the process started.
static SENT_ZERO_COPY: AtomicU64 = AtomicU64::new(0);

pub fn bytes_sent_zero_copy() -> u64 {
    SENT_ZERO_COPY.load(Ordering::Relaxed)
}

fn descriptor_limit() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid resource and a valid struct to fill.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit)
}

/// The soft limit on open descriptors now (1024 if it cannot be read).
pub fn descriptor_limit_now() -> u64 {
    descriptor_limit().map_or(1024, |l| l.rlim_cur)
}

/// Raises the soft limit on open descriptors to the hard limit, as servers do: each
/// file-backed segment holds one, beside every connection. Returns the limit now in force.
pub fn raise_descriptor_limit() -> u64 {
    let Some(limit) = descriptor_limit() else {
        return 0;
    };
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit with a valid resource and a valid struct.
    if limit.rlim_cur < limit.rlim_max
        && unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0
    {
        return raised.rlim_cur;
    }
    limit.rlim_cur
}

/// File-backed segments alive at once: a quarter of the descriptor limit, so that they
/// never starve connections and stores of descriptors.
static MAX_FILE_BACKED: LazyLock<usize> =
    LazyLock::new(|| usize::try_from(descriptor_limit_now() / 4).unwrap_or(usize::MAX));

/// Copies `bytes` into a new unnamed file in `dir` and returns them as `Bytes` backed by a
/// read-only mapping of it, which [`SendfileStream`] sends without copying.
pub fn file_backed(dir: &Path, bytes: &[u8]) -> io::Result<Bytes> {
    map_into(unnamed_file(dir)?, bytes)
}

/// An unnamed file in `dir`, which disappears with its last descriptor, crash or not; a
/// memfd where the filesystem has no `O_TMPFILE` (slower to send, still without a copy).
fn unnamed_file(dir: &Path) -> io::Result<File> {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(dir);
    match opened {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => memfd(),
        opened => opened,
    }
}

fn memfd() -> io::Result<File> {
    // SAFETY: the name is a valid C string and the flag is valid for memfd_create.
    let fd = unsafe { libc::memfd_create(c"streamgate-segment".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Writes `bytes` into the empty, unnamed `file`, maps it read-only and registers the mapping.
fn map_into(mut file: File, bytes: &[u8]) -> io::Result<Bytes> {
    if bytes.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "nothing to keep",
        ));
    }
    if REGIONS.read().map(|r| r.len()).unwrap_or(usize::MAX) >= *MAX_FILE_BACKED {
        return Err(io::Error::other(
            "as many segments are file-backed as the descriptor limit allows",
        ));
    }
    file.write_all(bytes)?;
    let len = bytes.len();
    // SAFETY: a fresh read-only shared mapping of the whole file, which we never write or
    // resize again; nothing else is mapped at the returned address.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let mapping = FileMapping {
        ptr: ptr.cast::<u8>().cast_const(),
        len,
        file,
    };
    if let Ok(mut regions) = REGIONS.write() {
        regions.insert(mapping.ptr as usize, (len, mapping.file.as_raw_fd()));
    }
    Ok(Bytes::from_owner(mapping))
}

/// A read-only mapping of an unnamed file, registered in [`REGIONS`] while it lives.
#[derive(Debug)]
struct FileMapping {
    ptr: *const u8,
    len: usize,
    file: File,
}

// SAFETY: the mapping is read-only and its file is never written again, so sharing or
// moving it between threads cannot race.
unsafe impl Send for FileMapping {}
// SAFETY: as above.
unsafe impl Sync for FileMapping {}

impl AsRef<[u8]> for FileMapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes until `drop`, and they never change.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for FileMapping {
    fn drop(&mut self) {
        if let Ok(mut regions) = REGIONS.write() {
            regions.remove(&(self.ptr as usize));
        }
        // SAFETY: unmaps exactly the mapping `file_backed` made; no slice of it outlives `self`.
        unsafe {
            libc::munmap(self.ptr.cast_mut().cast(), self.len);
        }
        // The file goes when `file` closes; pages still queued in sockets stay valid.
    }
}

/// The file and offset behind `slice`, when it lies wholly inside a file-backed mapping.
fn find(slice: &[u8]) -> Option<(RawFd, i64)> {
    let start = slice.as_ptr() as usize;
    let regions = REGIONS.read().ok()?;
    let (&base, &(len, fd)) = regions.range(..=start).next_back()?;
    let offset = start - base;
    (offset + slice.len() <= len).then_some((fd, offset as i64))
}

/// A TCP stream that sends bytes from file-backed mappings with `sendfile`.
#[derive(Debug)]
pub struct SendfileStream {
    stream: TcpStream,
}

impl SendfileStream {
    pub fn new(stream: TcpStream) -> Self {
        Self { stream }
    }

    /// One non-blocking write of a prefix of `bufs`: the leading run of ordinary slices
    /// with `sendmsg` (held back with `MSG_MORE` when a file-backed slice follows, so the
    /// headers leave in the same packets as the body), or one file-backed slice with
    /// `sendfile`.
    fn write_some(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let Some(first) = bufs.iter().find(|b| !b.is_empty()) else {
            return Ok(0);
        };
        let socket = self.stream.as_raw_fd();
        if let Some((fd, offset)) = find(first) {
            let mut offset = offset;
            // SAFETY: `fd` is a live file (see the module docs) and `offset..+len` lies in it.
            let sent = unsafe { libc::sendfile(socket, fd, &mut offset, first.len()) };
            if sent < 0 {
                return Err(io::Error::last_os_error());
            }
            SENT_ZERO_COPY.fetch_add(sent as u64, Ordering::Relaxed);
            return Ok(sent as usize);
        }
        let mut plain = Vec::with_capacity(bufs.len());
        let mut more = false;
        for buf in bufs.iter().filter(|b| !b.is_empty()) {
            if find(buf).is_some() {
                more = true;
                break;
            }
            if plain.len() == libc::UIO_MAXIOV as usize {
                break;
            }
            plain.push(IoSlice::new(buf));
        }
        // SAFETY: an all-zero msghdr is valid; the iovec array (IoSlice is ABI-compatible
        // with iovec) outlives the call.
        let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
        message.msg_iov = plain.as_ptr().cast_mut().cast();
        message.msg_iovlen = plain.len() as _;
        let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
        // SAFETY: `message` points at valid buffers for the duration of the call.
        let sent = unsafe { libc::sendmsg(socket, &message, flags) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sent as usize)
    }
}

impl AsyncRead for SendfileStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendfileStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            match self
                .stream
                .try_io(Interest::WRITABLE, || self.write_some(bufs))
            {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        // hyper queues body chunks as they are (rather than copying them into one buffer)
        // only for vectored writers, which is what lets a file-backed chunk reach us intact.
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn file_backed_bytes_are_registered_while_alive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = pattern(300_000);
        let backed = file_backed(dir.path(), &data).expect("file-backed");
        assert_eq!(&backed[..], &data[..]);
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("list").count(),
            0,
            "the file has no name"
        );
        let part = backed.slice(1000..2000);
        let (_, offset) = find(&part).expect("a slice of a file-backed mapping is found");
        assert_eq!(offset, 1000);
        assert!(find(&data[..]).is_none(), "heap bytes are not in a region");
        let address = backed.as_ptr() as usize;
        drop((backed, part));
        // Other tests map files of other lengths, which may land at the freed address.
        let regions = REGIONS.read().expect("lock");
        assert!(
            regions.get(&address).map(|(len, _)| *len) != Some(data.len()),
            "the last drop unregisters the mapping"
        );
    }

    #[test]
    fn empty_input_and_a_missing_directory_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(file_backed(dir.path(), &[]).is_err());
        assert!(
            file_backed(&dir.path().join("missing"), b"x").is_err(),
            "no such directory"
        );
    }

    #[tokio::test]
    async fn mixed_writes_arrive_intact_from_an_unnamed_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = pattern(3 << 20);
        let backed = file_backed(dir.path(), &body).expect("file-backed");
        mixed_writes_arrive_intact(&body, backed).await;
    }

    #[tokio::test]
    async fn mixed_writes_arrive_intact_from_a_memfd() {
        let body = pattern(1 << 20);
        let backed = map_into(memfd().expect("memfd"), &body).expect("memfd-backed");
        mixed_writes_arrive_intact(&body, backed).await;
    }

    /// Mixed ordinary and file-backed slices, including slices that start mid-mapping,
    /// arrive in order and intact, and the file-backed ones go through `sendfile`.
    async fn mixed_writes_arrive_intact(body: &[u8], backed: Bytes) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let head = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        let tail = b"trailer".to_vec();
        let mut expected = head.clone();
        expected.extend_from_slice(&body[5..]);
        expected.extend_from_slice(&tail);
        expected.extend_from_slice(&body[..10]);

        let reader = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut got = Vec::new();
            stream.read_to_end(&mut got).await.expect("read");
            got
        });
        let before = bytes_sent_zero_copy();
        let mut stream = SendfileStream::new(TcpStream::connect(addr).await.expect("connect"));
        let parts = [
            Bytes::from(head),
            backed.slice(5..),
            Bytes::from(tail),
            backed.slice(..10),
        ];
        let mut queue: Vec<Bytes> = parts.to_vec();
        while !queue.is_empty() {
            let slices: Vec<IoSlice<'_>> = queue.iter().map(|b| IoSlice::new(b)).collect();
            let mut n = stream.write_vectored(&slices).await.expect("write");
            assert!(n > 0);
            while n > 0 {
                let front = &mut queue[0];
                let take = n.min(front.len());
                let _ = front.split_to(take);
                n -= take;
                if front.is_empty() {
                    queue.remove(0);
                }
            }
        }
        stream.shutdown().await.expect("shutdown");
        drop(stream);
        let got = reader.await.expect("reader");
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes differ");
        assert!(
            bytes_sent_zero_copy() - before >= (body.len() - 5 + 10) as u64,
            "file-backed bytes went through sendfile"
        );
    }
}
