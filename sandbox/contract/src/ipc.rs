//! Arrow IPC across the boundary: bounded chunks from host to guest, and strict checks of what
//! the guest sends back.
//!
//! Bytes from a guest are hostile. Before the Arrow decoder sees them, [`scan`] walks the stream's
//! framing and message headers itself: one schema message first, then only uncompressed record
//! batches whose bodies lie inside the buffer, then the end marker, and nothing else. The decoder
//! then runs with full validation of every array.

use arrow_array::RecordBatch;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_ipc::{MessageHeader, root_as_message};
use arrow_schema::{Schema, SchemaRef};

/// Why bytes from a guest were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpcError {
    #[error("{0} bytes is more than the {1} allowed")]
    TooLarge(usize, usize),
    #[error("malformed Arrow IPC stream: {0}")]
    Malformed(String),
    #[error("compressed record batches are not accepted")]
    Compressed,
    #[error("the schema differs from the table's")]
    SchemaMismatch,
}

/// The most messages one stream from a guest may hold.
const MAX_MESSAGES: usize = 4096;

/// Walks the framing of an IPC stream and returns how many record batches it holds. Refuses
/// anything but: schema, uncompressed record batches, optional end marker.
fn scan(bytes: &[u8]) -> Result<usize, IpcError> {
    let malformed = |what: &str| IpcError::Malformed(what.to_owned());
    let mut at = 0usize;
    let mut batches = 0usize;
    let mut messages = 0usize;
    let read_u32 = |at: usize| -> Option<u32> { Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?)) };
    loop {
        if at == bytes.len() {
            break;
        }
        let mut len = read_u32(at).ok_or_else(|| malformed("truncated message length"))?;
        at += 4;
        if len == 0xFFFF_FFFF {
            len = read_u32(at).ok_or_else(|| malformed("truncated message length"))?;
            at += 4;
        }
        if len == 0 {
            if at != bytes.len() {
                return Err(malformed("bytes after the end marker"));
            }
            break;
        }
        let len = len as usize;
        let meta = bytes.get(at..at + len).ok_or_else(|| malformed("message past the end of the bytes"))?;
        at += len;
        let message = root_as_message(meta).map_err(|e| IpcError::Malformed(format!("bad message header: {e}")))?;
        let body = usize::try_from(message.bodyLength()).map_err(|_| malformed("negative body length"))?;
        if body > bytes.len() - at {
            return Err(malformed("message body past the end of the bytes"));
        }
        at += body;
        match (messages, message.header_type()) {
            (0, MessageHeader::Schema) => {}
            (0, _) => return Err(malformed("the stream does not begin with a schema")),
            (_, MessageHeader::RecordBatch) => {
                let batch = message.header_as_record_batch().ok_or_else(|| malformed("empty record batch header"))?;
                if batch.compression().is_some() {
                    return Err(IpcError::Compressed);
                }
                if batch.length() < 0 {
                    return Err(malformed("negative row count"));
                }
                // Every buffer inside the body, every node's length non-negative: the decoder
                // slices buffers by these numbers before it validates anything.
                for buffer in batch.buffers().into_iter().flatten() {
                    let end = buffer.offset().checked_add(buffer.length());
                    if buffer.offset() < 0 || buffer.length() < 0 || end.is_none_or(|end| end as u64 > body as u64) {
                        return Err(malformed("a buffer lies outside its message body"));
                    }
                }
                if batch.nodes().into_iter().flatten().any(|n| n.length() < 0 || n.null_count() < 0) {
                    return Err(malformed("negative node length"));
                }
                batches += 1;
            }
            (_, MessageHeader::DictionaryBatch) => return Err(malformed("dictionary batches are not accepted")),
            (_, other) => return Err(IpcError::Malformed(format!("unexpected {other:?} message"))),
        }
        messages += 1;
        if messages > MAX_MESSAGES {
            return Err(IpcError::Malformed(format!("more than {MAX_MESSAGES} messages")));
        }
    }
    if messages == 0 {
        return Err(malformed("empty stream"));
    }
    Ok(batches)
}

/// Reads a stream holding only a schema.
pub fn read_schema(bytes: &[u8], max_bytes: usize) -> Result<SchemaRef, IpcError> {
    decode(bytes, max_bytes, |batches, reader| {
        if batches != 0 {
            return Err(IpcError::Malformed("a schema stream holds record batches".to_owned()));
        }
        Ok(reader.schema())
    })
}

/// Reads the record batches of a stream whose schema must equal `schema`.
pub fn read_batches(bytes: &[u8], schema: &Schema, max_bytes: usize) -> Result<Vec<RecordBatch>, IpcError> {
    decode(bytes, max_bytes, |_, reader| {
        if reader.schema().fields() != schema.fields() {
            return Err(IpcError::SchemaMismatch);
        }
        reader.map(|batch| batch.map_err(|e| IpcError::Malformed(e.to_string()))).collect()
    })
}

/// Reads a whole stream, schema and batches (what a `sandbox-runner` process sends back).
pub fn read_stream(bytes: &[u8], max_bytes: usize) -> Result<(SchemaRef, Vec<RecordBatch>), IpcError> {
    decode(bytes, max_bytes, |_, reader| {
        let schema = reader.schema();
        let batches =
            reader.map(|batch| batch.map_err(|e| IpcError::Malformed(e.to_string()))).collect::<Result<_, _>>()?;
        Ok((schema, batches))
    })
}

/// What every read does: the size limit, [`scan`]'s walk of the framing, then `read` with the
/// number of record batches and Arrow's reader over the bytes, [`guarded`].
fn decode<T>(
    bytes: &[u8],
    max_bytes: usize,
    read: impl FnOnce(usize, arrow_ipc::reader::StreamReader<&[u8]>) -> Result<T, IpcError>,
) -> Result<T, IpcError> {
    if bytes.len() > max_bytes {
        return Err(IpcError::TooLarge(bytes.len(), max_bytes));
    }
    let batches = scan(bytes)?;
    guarded(|| {
        let reader =
            arrow_ipc::reader::StreamReader::try_new(bytes, None).map_err(|e| IpcError::Malformed(e.to_string()))?;
        read(batches, reader)
    })
}

/// Runs Arrow's decoder over bytes [`scan`] let through, turning a panic into a refusal. The
/// decoder builds arrays from the message's numbers before it validates them, and some
/// inconsistent numbers (a validity bitmap shorter than its column, say) panic there instead of
/// returning an error: found by the fuzz targets. The closure reads only the bytes it is given
/// and builds new arrays, so nothing it leaves behind is half-changed.
fn guarded<T>(decode: impl FnOnce() -> Result<T, IpcError>) -> Result<T, IpcError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode))
        .unwrap_or_else(|_| Err(IpcError::Malformed("the Arrow decoder refused the stream".to_owned())))
}

/// Encodes batches as one uncompressed IPC stream with a fixed layout: the same batches give
/// the same bytes.
pub fn encode(schema: &Schema, batches: &[RecordBatch]) -> Result<Vec<u8>, arrow_schema::ArrowError> {
    let mut writer = StreamWriter::try_new_with_options(Vec::new(), schema, IpcWriteOptions::default())?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    writer.into_inner()
}

/// One chunk's bytes, and the rows still to send.
pub type Chunk = (Vec<u8>, Option<RecordBatch>);

/// Encodes the first rows of `batch` that fit in `max_bytes` and returns them with the rest.
/// `None` when not even one row fits.
pub fn encode_chunk(batch: &RecordBatch, max_bytes: usize) -> Result<Option<Chunk>, arrow_schema::ArrowError> {
    let rows = batch.num_rows();
    let estimate = batch.get_array_memory_size().max(1);
    // Start from the share of rows that the in-memory size suggests will fit, then halve.
    let mut take =
        if estimate <= max_bytes { rows } else { ((rows as u128 * max_bytes as u128) / estimate as u128) as usize };
    take = take.clamp(1, rows.max(1));
    loop {
        let chunk = batch.slice(0, take);
        let bytes = encode(&batch.schema(), std::slice::from_ref(&chunk))?;
        if bytes.len() <= max_bytes {
            let rest = (take < rows).then(|| batch.slice(take, rows - take));
            return Ok(Some((bytes, rest)));
        }
        if take == 1 {
            return Ok(None);
        }
        take /= 2;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field};

    use super::*;

    fn batch(rows: usize) -> RecordBatch {
        let schema =
            Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, true), Field::new("v", DataType::Int64, true)]));
        let keys: Vec<String> = (0..rows).map(|i| format!("key-{i}")).collect();
        RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(keys)), Arc::new(Int64Array::from_iter_values(0..rows as i64))],
        )
        .unwrap()
    }

    #[test]
    fn chunks_respect_the_limit_and_cover_every_row() {
        let big = batch(100_000);
        let mut rest = Some(big.clone());
        let mut seen = 0;
        while let Some(b) = rest {
            let (bytes, next) = encode_chunk(&b, 64 << 10).unwrap().unwrap();
            assert!(bytes.len() <= 64 << 10);
            let back = read_batches(&bytes, &big.schema(), usize::MAX).unwrap();
            assert_eq!(back[0], big.slice(seen, back[0].num_rows()));
            seen += back[0].num_rows();
            rest = next;
        }
        assert_eq!(seen, 100_000);
    }

    #[test]
    fn a_row_larger_than_the_limit_is_reported() {
        assert!(encode_chunk(&batch(10), 16).unwrap().is_none());
    }

    #[test]
    fn scan_refuses_truncation_garbage_and_trailing_bytes() {
        let good = encode(&batch(3).schema(), &[batch(3)]).unwrap();
        assert_eq!(scan(&good), Ok(1));
        for cut in [1, 5, 9, good.len() / 2, good.len() - 9] {
            assert!(scan(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"more");
        assert!(matches!(scan(&trailing), Err(IpcError::Malformed(_))));
        assert!(scan(b"").is_err());
        assert!(scan(&[0xff; 64]).is_err());
        // A batch before any schema.
        let schema_len = encode(&batch(3).schema(), &[]).unwrap().len() - 8;
        assert!(scan(&good[schema_len..]).is_err());
    }
}
