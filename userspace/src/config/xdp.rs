//! `[[xdp]]`: the interfaces the L4 tier attaches to.

use std::collections::HashMap;

use super::{
    XdpInterface, XdpMode,
    defaults::MAX_IFNAME,
    errors::Cx,
    raw::{RawXdp, S},
    values::{enum_value, unique},
};

pub(super) fn convert_xdp(cx: &mut Cx, raw: &[S<RawXdp>]) -> Vec<XdpInterface> {
    let mut seen = HashMap::new();
    let mut out = Vec::new();
    for table in raw {
        let x = table.get_ref();
        let mode = enum_value(
            cx,
            x.mode.as_ref(),
            "xdp mode",
            &[
                ("auto", XdpMode::Auto),
                ("driver", XdpMode::Driver),
                ("skb", XdpMode::Skb),
            ],
            XdpMode::Auto,
        );
        let Some(iface) = x.interface.as_ref() else {
            cx.push(
                table.span(),
                "missing interface in [[xdp]] (the network interface to attach to)",
            );
            continue;
        };
        let name = iface.get_ref();
        if name.is_empty()
            || name.len() > MAX_IFNAME
            || name.contains(|c: char| c == '/' || c.is_whitespace())
        {
            cx.push(
                iface.span(),
                format!(
                    "bad interface name \"{name}\" (1 to {MAX_IFNAME} bytes, no '/' or spaces)"
                ),
            );
            continue;
        }
        unique(cx, &mut seen, name.clone(), iface.span(), || {
            format!("[[xdp]] interface \"{name}\"")
        });
        out.push(XdpInterface {
            interface: name.clone(),
            mode,
        });
    }
    out
}
