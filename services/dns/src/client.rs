//! A minimal stub resolver for tests, benchmarks and `navarch` diagnostics: one question,
//! one server, UDP or TCP.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The query message for `name` and `qtype`, with id `id`.
pub fn query_message(id: u16, name: &str, qtype: RecordType) -> std::io::Result<Vec<u8>> {
    let name = Name::from_str(name).map_err(std::io::Error::other)?;
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name, qtype));
    m.to_vec().map_err(std::io::Error::other)
}

/// Asks `server` one question over UDP (or TCP) and returns the response.
pub async fn query(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    tcp: bool,
) -> std::io::Result<Message> {
    let id = rand_id();
    let msg = query_message(id, name, qtype)?;
    let work = async {
        let bytes = if tcp {
            let mut s = TcpStream::connect(server).await?;
            let mut frame = (msg.len() as u16).to_be_bytes().to_vec();
            frame.extend_from_slice(&msg);
            s.write_all(&frame).await?;
            let len = s.read_u16().await? as usize;
            let mut buf = vec![0; len];
            s.read_exact(&mut buf).await?;
            buf
        } else {
            let bind = if server.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let s = UdpSocket::bind(bind).await?;
            s.connect(server).await?;
            s.send(&msg).await?;
            let mut buf = vec![0; 65535];
            let n = s.recv(&mut buf).await?;
            buf.truncate(n);
            buf
        };
        Message::from_vec(&bytes).map_err(std::io::Error::other)
    };
    let m = tokio::time::timeout(Duration::from_secs(3), work)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no DNS answer"))??;
    if m.id() != id {
        return Err(std::io::Error::other("DNS answer for another query"));
    }
    Ok(m)
}

fn rand_id() -> u16 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (n ^ (n >> 16)) as u16
}
