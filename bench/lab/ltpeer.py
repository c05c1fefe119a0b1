#!/usr/bin/python3
"""The libtorrent method of bench/lab.sh: one seeder on the print server, one
peer per workstation, plain BitTorrent between them with Debian's
python3-libtorrent (libtorrent-rasterbar 2.0).

  ltpeer.py seed --file IMAGE --torrent OUT.torrent --listen IP --ready FILE --stop FILE
  ltpeer.py peer --torrent T --listen IP --peers IP,IP,... --save DIR --target DIR
                 --done FILE --stop FILE

No tracker, DHT, LSD, UPnP, NAT-PMP, encryption or uTP: every peer is told the
addresses of the seeder and of all other peers and connects to them directly
(connect_peer, retried until connected). Unchoke slots are unlimited, as a LAN
client would be set up. A peer downloads the whole tar.gz (256 KiB pieces),
then runs `tar -xzf` into its target (extraction after download: plain
BitTorrent gives pieces out of order), writes "EPOCH_SECONDS RC
DOWNLOADED_EPOCH_SECONDS" to --done,
and keeps seeding until --stop exists (bench/lab.sh creates it when every
workstation is done) or --linger seconds passed.
"""

import argparse
import os
import subprocess
import sys
import time

import libtorrent as lt

PORT = 6881
PIECE = 256 << 10


def session(listen):
    return lt.session({
        "listen_interfaces": "%s:%d" % (listen, PORT),
        "outgoing_interfaces": listen,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_utp": False,
        "out_enc_policy": int(lt.enc_policy.disabled),
        "in_enc_policy": int(lt.enc_policy.disabled),
        "allowed_enc_level": 1,  # plaintext
        "choking_algorithm": int(lt.choking_algorithm_t.fixed_slots_choker),
        "unchoke_slots_limit": -1,  # unlimited: no tit-for-tat on a LAN
        "connections_limit": 500,
        "active_downloads": -1,
        "active_seeds": -1,
        "alert_mask": int(lt.alert.category_t.error_notification | lt.alert.category_t.status_notification),
    })


def log(*a):
    print("%.3f" % time.time(), *a, flush=True)


def seed(a):
    fs = lt.file_storage()
    lt.add_files(fs, a.file)
    t = lt.create_torrent(fs, PIECE)
    lt.set_piece_hashes(t, os.path.dirname(os.path.abspath(a.file)))
    with open(a.torrent + ".tmp", "wb") as f:
        f.write(lt.bencode(t.generate()))
    os.rename(a.torrent + ".tmp", a.torrent)
    ses = session(a.listen)
    ti = lt.torrent_info(a.torrent)
    h = ses.add_torrent({"ti": ti, "save_path": os.path.dirname(os.path.abspath(a.file)),
                         "flags": lt.torrent_flags.seed_mode})
    log("seeding", ti.info_hash(), ti.total_size(), "bytes", ti.num_pieces(), "pieces")
    ready = False
    deadline = time.time() + a.max_time
    last = 0
    while not os.path.exists(a.stop) and time.time() < deadline:
        st = h.status()
        if not ready and st.is_seeding:
            open(a.ready, "w").close()
            ready = True
        if time.time() - last >= 5:
            log("seed up=%d peers=%d state=%s" % (st.total_upload, st.num_peers, st.state))
            last = time.time()
        time.sleep(0.2)
    st = h.status()
    log("seed exit up=%d" % st.total_upload)
    return 0


def peer(a):
    ti = lt.torrent_info(a.torrent)
    ses = session(a.listen)
    os.makedirs(a.save, exist_ok=True)
    h = ses.add_torrent({"ti": ti, "save_path": a.save})
    others = [p for p in a.peers.split(",") if p and p != a.listen]
    finished = None
    rc = 0
    deadline = time.time() + a.max_time
    last_connect = 0
    last_log = 0
    while time.time() < deadline:
        now = time.time()
        if now - last_connect >= 1:
            connected = {pi.ip[0] for pi in h.get_peer_info()}
            for p in others:
                if p not in connected:
                    h.connect_peer((p, PORT))
            last_connect = now
        st = h.status()
        if now - last_log >= 5:
            log("peer %.1f%% down=%d up=%d peers=%d" % (st.progress * 100, st.total_download,
                                                        st.total_upload, st.num_peers))
            last_log = now
        if finished is None and st.is_seeding:
            downloaded = time.time()
            log("downloaded, extracting")
            path = os.path.join(a.save, ti.files().file_path(0))
            # libtorrent keeps seeding from its own threads while tar runs.
            rc = subprocess.run(["tar", "-xzf", path, "-C", a.target]).returncode
            finished = time.time()
            with open(a.done, "w") as f:
                f.write("%.6f %d %.6f\n" % (finished, rc, downloaded))
            log("extracted rc=%d" % rc)
            deadline = min(deadline, finished + a.linger)
        if finished is not None and os.path.exists(a.stop):
            break
        time.sleep(0.1)
    st = h.status()
    log("peer exit down=%d up=%d" % (st.total_download, st.total_upload))
    if finished is None:
        log("timed out before the download finished")
        return 1
    return rc


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("seed")
    s.add_argument("--file", required=True)
    s.add_argument("--torrent", required=True)
    s.add_argument("--listen", required=True)
    s.add_argument("--ready", required=True)
    s.add_argument("--stop", required=True)
    s.add_argument("--max-time", type=float, default=3600)
    q = sub.add_parser("peer")
    q.add_argument("--torrent", required=True)
    q.add_argument("--listen", required=True)
    q.add_argument("--peers", required=True)
    q.add_argument("--save", required=True)
    q.add_argument("--target", required=True)
    q.add_argument("--done", required=True)
    q.add_argument("--stop", required=True)
    q.add_argument("--linger", type=float, default=120)
    q.add_argument("--max-time", type=float, default=3600)
    a = p.parse_args()
    return seed(a) if a.mode == "seed" else peer(a)


if __name__ == "__main__":
    sys.exit(main())
