//! The Redis connection of the shared store: one multiplexed connection, rebuilt
//! when it breaks, whose every call ends within a deadline.
//!
//! A Redis that stops answering without closing its connections (a silent network
//! fault, a paused host) would otherwise hold every request that reads a session or
//! a counter until TCP gives up, minutes later. With the deadline such a call fails
//! like a refused one: the request is answered "unavailable" at once and nothing is
//! queued behind it.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

/// How long a call to Redis may take when the configuration does not say.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(2);

/// How long start-up waits for Redis to answer, whatever the deadline of a call.
pub(crate) const START_LIMIT: Duration = Duration::from_secs(10);

/// A cloneable Redis connection whose calls end within `deadline`: see the module
/// documentation.
#[derive(Clone)]
pub(crate) struct RedisConn {
    manager: ConnectionManager,
    deadline: Duration,
}

impl RedisConn {
    /// Connects through `client`; calls then end within `deadline`.
    pub(crate) async fn connect(
        client: redis::Client,
        deadline: Duration,
    ) -> Result<Self, RedisError> {
        // The manager's own timeouts make a stalled connection fail and be rebuilt;
        // the deadline below also bounds the wait for a rebuild in progress.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(deadline)
            .set_response_timeout(deadline)
            .set_number_of_retries(2)
            .set_tcp_settings(tcp_settings(deadline));
        let manager = within(
            START_LIMIT,
            client.get_connection_manager_with_config(config),
        )
        .await?;
        Ok(Self { manager, deadline })
    }
}

/// No Nagle delay (small commands go out at once; redis leaves it on unless built
/// with `tcp_nodelay`). On Linux, a connection whose bytes go unacknowledged for five
/// deadlines (at least 10 s) is dropped by the kernel, so that the manager connects
/// again: a call that only times out leaves the connection in place, and a Redis
/// host gone from the network would otherwise keep it until TCP gives up, minutes
/// later. (A Redis process that is stuck while its host answers keeps the
/// connection; its calls time out until it answers.)
fn tcp_settings(deadline: Duration) -> redis::io::tcp::TcpSettings {
    let settings = redis::io::tcp::TcpSettings::default().set_nodelay(true);
    #[cfg(target_os = "linux")]
    let settings =
        settings.set_user_timeout(deadline.saturating_mul(5).max(Duration::from_secs(10)));
    #[cfg(not(target_os = "linux"))]
    let _ = deadline;
    settings
}

/// `call`, or a timeout error once `limit` has passed.
pub(crate) async fn within<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, RedisError>>,
) -> Result<T, RedisError> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or_else(|_| Err(timed_out(limit)))
}

fn timed_out(limit: Duration) -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("redis did not answer within {} ms", limit.as_millis()),
    ))
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let deadline = self.deadline;
        Box::pin(within(deadline, self.manager.req_packed_command(cmd)))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let deadline = self.deadline;
        Box::pin(within(
            deadline,
            self.manager.req_packed_commands(cmd, offset, count),
        ))
    }

    fn get_db(&self) -> i64 {
        self.manager.get_db()
    }
}
