//! The ceiling: a trivial loopback server with ZooKeeper's framing and
//! pipelining that answers every request at once from nothing (getData with a
//! fixed value, everything else with an empty success). What a client and this
//! machine can do at best; Warden's read throughput is reported as a fraction.

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use warden_core::jute::Writer;

const GET_DATA: i32 = 4;
const CREATE: i32 = 1;

fn reply(xid: i32, opcode: i32, value: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.put_i32(0);
    out.put_i32(xid);
    out.put_i64(1);
    out.put_i32(0);
    match opcode {
        GET_DATA => {
            out.put_buffer(Some(value));
            out.extend_from_slice(&[0u8; 68]); // Stat
        }
        CREATE => out.put_string("/ceiling"),
        _ => {}
    }
    let len = (out.len() - start - 4) as i32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

async fn serve(stream: TcpStream, value_size: usize) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::with_capacity(64 << 10, read);
    let value = vec![b'v'; value_size];
    let mut frame = Vec::new();
    let mut out = Vec::with_capacity(64 << 10);
    let mut first = true;
    loop {
        let len = read.read_i32().await? as usize;
        frame.resize(len, 0);
        read.read_exact(&mut frame).await?;
        if first {
            // ConnectResponse: protocol 0, timeout, session id 1, 16-byte password, readOnly.
            first = false;
            out.put_i32(37);
            out.put_i32(0);
            out.put_i32(30_000);
            out.put_i64(1);
            out.put_buffer(Some(&[0u8; 16]));
            out.put_bool(false);
        } else {
            let xid = i32::from_be_bytes(frame[0..4].try_into().unwrap());
            let opcode = i32::from_be_bytes(frame[4..8].try_into().unwrap());
            reply(xid, opcode, &value, &mut out);
        }
        // Write when nothing more is already buffered: pipelined replies batch up.
        if read.buffer().len() < 4 {
            write.write_all(&out).await?;
            out.clear();
        }
    }
}

/// Serves on `port` until killed, single-threaded like one Warden core.
pub fn run(port: u16, value_size: usize) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                let _ = serve(stream, value_size).await;
            });
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn get_data_reply_is_well_formed() {
        let mut out = Vec::new();
        super::reply(7, super::GET_DATA, b"abc", &mut out);
        let len = i32::from_be_bytes(out[0..4].try_into().unwrap()) as usize;
        assert_eq!(len, out.len() - 4);
        assert_eq!(&out[4..8], &7i32.to_be_bytes());
        assert_eq!(len, 4 + 8 + 4 + 4 + 3 + 68);
    }
}
