fn main() {
    let mut ebpf = xlb::dataplane::object::load_default().unwrap();
    for name in ["xlb_l4", "xlb_pass", "xlb_bench"] {
        let p: &mut aya::programs::Xdp = ebpf.program_mut(name).unwrap().try_into().unwrap();
        match p.load() { Ok(()) => println!("{name} loaded"), Err(e) => { println!("{name}: {e:?}"); } }
    }
}
