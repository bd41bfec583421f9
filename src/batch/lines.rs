//! Reading the lines of one part of a file as a stream of chunks: skip the line that began before
//! the part (it belongs to the previous worker), then yield every line that starts before the
//! part's end, reading past the end to finish the last one. Each line keeps where it came from,
//! so an error can name its file and line.

use anyhow::Result;
use futures::StreamExt;

use super::split::Part;

/// Where a line is: its input file (an index into the job's inputs), its line number when the
/// part starts at the file's start (otherwise only its byte offset is known without reading the
/// file from its start), and its byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub file: usize,
    pub line: Option<u64>,
    pub offset: u64,
}

/// Lines read together, with their positions.
#[derive(Debug, Default)]
pub struct Batch {
    pub lines: Vec<String>,
    pub positions: Vec<Pos>,
}

impl Batch {
    fn with_capacity(n: usize) -> Self {
        Batch {
            lines: Vec::with_capacity(n),
            positions: Vec::with_capacity(n),
        }
    }
}

/// Sends the non-blank lines of `part` (the job's input `file`) in batches of `batch_size` (the
/// last, partial batch stays in `batch` for the next part). Waits whenever the channel is full,
/// which bounds read-ahead. Returns false when the receiver is gone.
pub async fn send_batches(
    part: &Part,
    file: usize,
    batch_size: usize,
    batch: &mut Batch,
    tx: &tokio::sync::mpsc::Sender<Batch>,
) -> Result<bool> {
    let mut lines = Box::pin(lines(part));
    while let Some(line) = lines.next().await {
        let (text, line, offset) = line?;
        batch.lines.push(text);
        batch.positions.push(Pos { file, line, offset });
        if batch.lines.len() == batch_size {
            let full = std::mem::replace(batch, Batch::with_capacity(batch_size));
            if tx.send(full).await.is_err() {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// The non-blank lines of `part`, in order, read lazily, each with its line number (when known)
/// and byte offset.
pub fn lines(part: &Part) -> impl futures::Stream<Item = Result<(String, Option<u64>, u64)>> + '_ {
    futures::stream::try_unfold(Reader::new(part), |mut reader| async move {
        let line = reader.next_line().await?;
        Ok(line.map(|l| (l, reader)))
    })
}

struct Reader<'a> {
    part: &'a Part,
    stream: Option<futures::stream::BoxStream<'static, Result<bytes::Bytes>>>,
    buffer: Vec<u8>,
    /// Start of the unread bytes in `buffer`.
    head: usize,
    /// Unread bytes already searched for a newline: a long line is scanned once, not once per
    /// chunk.
    scanned: usize,
    /// File offset of `buffer[head]`.
    pos: u64,
    skipping: bool,
    done: bool,
    /// Lines seen so far when the part starts at the file's start.
    line_no: Option<u64>,
}

impl<'a> Reader<'a> {
    fn new(part: &'a Part) -> Self {
        // Start one byte early: if that byte ends a line, the part begins on a line start.
        let start = part.start.saturating_sub(1);
        Reader {
            part,
            stream: None,
            buffer: Vec::new(),
            head: 0,
            scanned: 0,
            pos: start,
            skipping: part.start > 0,
            done: false,
            line_no: (part.start == 0).then_some(0),
        }
    }

    async fn next_line(&mut self) -> Result<Option<(String, Option<u64>, u64)>> {
        loop {
            if self.done {
                return Ok(None);
            }
            let from = self.head + self.scanned;
            let newline = self.buffer[from..].iter().position(|&b| b == b'\n');
            self.scanned = match newline {
                Some(_) => 0,
                None => self.buffer.len() - self.head,
            };
            if let Some(i) = newline.map(|i| i + from - self.head) {
                let line_start = self.pos;
                let line = without_bom(&self.buffer[self.head..self.head + i], line_start);
                self.head += i + 1;
                self.pos += i as u64 + 1;
                if let Some(n) = &mut self.line_no {
                    *n += 1;
                }
                if std::mem::take(&mut self.skipping) {
                    if self.pos >= self.part.end {
                        self.done = true;
                    }
                    continue;
                }
                if line_start >= self.part.end {
                    self.done = true;
                    return Ok(None);
                }
                if self.pos >= self.part.end {
                    self.done = true;
                }
                if let Some(text) = text_of_line(line) {
                    return Ok(Some((text, self.line_no, line_start)));
                }
                continue;
            }
            if self.stream.is_none() {
                self.stream = Some(self.part.object.location.read_from(self.pos).await?);
            }
            let Some(stream) = self.stream.as_mut() else {
                return Ok(None);
            };
            match stream.next().await {
                Some(chunk) => {
                    self.buffer.drain(..self.head);
                    self.head = 0;
                    self.buffer.extend_from_slice(&chunk?);
                }
                None => {
                    // The last line, without a newline.
                    self.done = true;
                    let line = without_bom(&self.buffer[self.head..], self.pos);
                    if self.skipping || self.pos >= self.part.end {
                        return Ok(None);
                    }
                    let line_no = self.line_no.map(|n| n + 1);
                    return Ok(text_of_line(line).map(|text| (text, line_no, self.pos)));
                }
            }
        }
    }
}

const BOM: &[u8] = b"\xef\xbb\xbf";

/// A line's bytes without the UTF-8 byte order mark that may open the file: it is not part of
/// the first line's text, though its bytes count in the offsets that split the file into parts.
fn without_bom(line: &[u8], start: u64) -> Vec<u8> {
    match line.strip_prefix(BOM) {
        Some(rest) if start == 0 => rest.to_vec(),
        _ => line.to_vec(),
    }
}

/// The text of one input line: without its `\r`, `None` when blank, invalid UTF-8 replaced (the
/// decoder then names the line).
pub fn text_of_line(mut bytes: Vec<u8>) -> Option<String> {
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    Some(
        String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

/// Calls `emit` with every non-blank line of `part`, in order.
#[cfg(test)]
async fn for_each_line(part: &Part, mut emit: impl FnMut(String) -> Result<()>) -> Result<()> {
    let mut lines = Box::pin(lines(part));
    while let Some(line) = lines.next().await {
        emit(line?.0)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::split::parts;
    use super::*;
    use crate::storage::remote::{Location, Object};

    #[test]
    fn every_line_read_once_for_any_worker_count() {
        let dir = tempfile::tempdir().unwrap();
        // A byte order mark opens two of the files: parts cut inside it or just after it.
        let text_a = "\u{feff}l1\nline-2\n\nl4 with spaces\n";
        let text_b = "m1\nm2 no newline at end";
        let text_c = "\u{feff}c";
        std::fs::write(dir.path().join("a"), text_a).unwrap();
        std::fs::write(dir.path().join("b"), text_b).unwrap();
        std::fs::write(dir.path().join("c"), text_c).unwrap();
        let objects: Vec<Object> = ["a", "b", "c"]
            .iter()
            .map(|n| {
                let p = dir.path().join(n);
                Object {
                    location: crate::storage::remote::open(p.to_str().unwrap()).unwrap(),
                    size: std::fs::metadata(&p).unwrap().len(),
                }
            })
            .collect();
        let _: Option<Location> = None;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for count in 1..=70 {
            let mut all = Vec::new();
            for index in 0..count {
                for part in parts(&objects, index, count) {
                    rt.block_on(for_each_line(&part, |l| {
                        all.push(l);
                        Ok(())
                    }))
                    .unwrap();
                }
            }
            assert_eq!(
                all,
                [
                    "l1",
                    "line-2",
                    "l4 with spaces",
                    "m1",
                    "m2 no newline at end",
                    "c"
                ],
                "{count} workers"
            );
        }
    }
}
