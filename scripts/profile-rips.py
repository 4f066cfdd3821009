#!/usr/bin/env python3
# Attributes sampled guest RIPs (one hex address a line, e.g. from the ignored test
# qemu-tests/tests/scale.rs::profile_load_rips) to the kernel ELF's functions (nm) and
# prints the top 30: python3 scripts/profile-rips.py KERNEL_ELF RIPS_FILE
# (KERNEL_ELF: target/image-build/release/x86_64-unknown-none/image/omega-kernel).
import sys, bisect, subprocess, collections
k=sys.argv[1]; rips=[int(l,16) for l in open(sys.argv[2]) if l.strip()]
syms=[]
for l in subprocess.run(['nm','-C',k],capture_output=True,text=True).stdout.splitlines():
    p=l.split(' ',2)
    if len(p)==3 and p[1] in 'tTwW':
        syms.append((int(p[0],16),p[2]))
syms.sort(); addrs=[a for a,_ in syms]
c=collections.Counter()
for r in rips:
    i=bisect.bisect_right(addrs,r)-1
    c[syms[i][1][:140] if i>=0 else '?']+=1
n=len(rips); print(n,'samples')
for s,v in c.most_common(30): print(f"{v*100/n:5.1f}% {s}")
