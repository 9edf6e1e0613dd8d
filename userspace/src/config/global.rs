//! `[global]`.

use std::path::{Path, PathBuf};

use super::{
    Global,
    defaults::*,
    errors::Cx,
    raw::{RawGlobal, S},
    values::{address, int, is_prime, prefix_v4, prefix_v6, text_value},
};

pub(super) fn convert_global(cx: &mut Cx, raw: Option<&S<RawGlobal>>) -> Global {
    let g = raw.map(|g| g.get_ref());
    let api_socket = g.and_then(|g| g.api_socket.as_ref());
    if let Some(v) = api_socket {
        let len = v.get_ref().len();
        if len == 0 {
            cx.push(v.span(), "api_socket must not be empty");
        } else if len > MAX_SOCKET_PATH {
            cx.push(
                v.span(),
                format!("api_socket path is {len} bytes; unix sockets allow {MAX_SOCKET_PATH}"),
            );
        }
    }
    let metrics = g
        .and_then(|g| g.metrics.as_ref())
        .and_then(|v| address(cx, v, "metrics"));
    let pin = g.and_then(|g| g.bpf_pin_path.as_ref());
    if let Some(v) = pin {
        if !Path::new(v.get_ref()).is_absolute() {
            cx.push(
                v.span(),
                format!(
                    "bpf_pin_path \"{}\" must be an absolute path (on bpffs)",
                    v.get_ref()
                ),
            );
        }
    }
    let mut maglev_size = DEFAULT_MAGLEV_SIZE;
    if let Some(v) = g.and_then(|g| g.maglev_size.as_ref()) {
        let n = *v.get_ref();
        if !(2..=MAX_MAGLEV_SIZE as i64).contains(&n) || !is_prime(n as u64) {
            cx.push(
                v.span(),
                format!("maglev_size must be a prime number <= {MAX_MAGLEV_SIZE} (got {n})"),
            );
        } else {
            maglev_size = n as u32;
        }
    }
    let dsr_source_v4 = g
        .and_then(|g| g.dsr_source_v4.as_ref())
        .and_then(|v| prefix_v4(cx, v))
        .unwrap_or(DEFAULT_DSR_SOURCE_V4);
    let dsr_source_v6 = g
        .and_then(|g| g.dsr_source_v6.as_ref())
        .and_then(|v| prefix_v6(cx, v))
        .unwrap_or(DEFAULT_DSR_SOURCE_V6);
    let flood = int(
        cx,
        g.and_then(|g| g.flood_new_flows_per_sec.as_ref()),
        "flood_new_flows_per_sec",
        0,
        i64::MAX,
        0,
    );
    let l7_threads = int(
        cx,
        g.and_then(|g| g.l7_threads.as_ref()),
        "l7_threads",
        0,
        MAX_L7_THREADS,
        0,
    );
    Global {
        l7_threads: l7_threads as usize,
        api_socket: PathBuf::from(text_value(api_socket, DEFAULT_API_SOCKET)),
        metrics,
        bpf_pin_path: PathBuf::from(text_value(pin, DEFAULT_BPF_PIN_PATH)),
        maglev_size,
        dsr_source_v4,
        dsr_source_v6,
        flood_new_flows_per_sec: flood as u64,
    }
}
