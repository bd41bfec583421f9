//! Reading the lines of one part of a file as a stream of chunks: skip the line that began before
//! the part (it belongs to the previous worker), then yield every line that starts before the
//! part's end, reading past the end to finish the last one.

use anyhow::Result;
use futures::StreamExt;

use super::split::Part;

/// Sends the non-blank lines of `part` in batches of `batch_size` (the last, partial batch stays
/// in `batch` for the next part). Waits whenever the channel is full, which bounds read-ahead.
/// Returns false when the receiver is gone.
pub async fn send_batches(
    part: &Part,
    batch_size: usize,
    batch: &mut Vec<String>,
    tx: &tokio::sync::mpsc::Sender<Vec<String>>,
) -> Result<bool> {
    let mut lines = Box::pin(lines(part));
    while let Some(line) = lines.next().await {
        batch.push(line?);
        if batch.len() == batch_size {
            let full = std::mem::replace(batch, Vec::with_capacity(batch_size));
            if tx.send(full).await.is_err() {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// The non-blank lines of `part`, in order, read lazily.
pub fn lines(part: &Part) -> impl futures::Stream<Item = Result<String>> + '_ {
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
    /// File offset of `buffer[head]`.
    pos: u64,
    skipping: bool,
    done: bool,
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
            pos: start,
            skipping: part.start > 0,
            done: false,
        }
    }

    async fn next_line(&mut self) -> Result<Option<String>> {
        loop {
            if self.done {
                return Ok(None);
            }
            if let Some(i) = self.buffer[self.head..].iter().position(|&b| b == b'\n') {
                let line_start = self.pos;
                let line = self.buffer[self.head..self.head + i].to_vec();
                self.head += i + 1;
                self.pos += i as u64 + 1;
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
                if let Some(text) = clean(line) {
                    return Ok(Some(text));
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
                    let line = self.buffer.split_off(self.head);
                    if self.skipping || self.pos >= self.part.end {
                        return Ok(None);
                    }
                    return Ok(clean(line));
                }
            }
        }
    }
}

fn clean(mut bytes: Vec<u8>) -> Option<String> {
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
        emit(line?)?;
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
        let text_a = "l1\nline-2\n\nl4 with spaces\n";
        let text_b = "m1\nm2 no newline at end";
        std::fs::write(dir.path().join("a"), text_a).unwrap();
        std::fs::write(dir.path().join("b"), text_b).unwrap();
        let objects: Vec<Object> = ["a", "b"]
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
        for count in 1..=7 {
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
                    "m2 no newline at end"
                ],
                "{count} workers"
            );
        }
    }
}
