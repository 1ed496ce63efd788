from __future__ import annotations

# -- one URL, one host: spellings that name two hosts to two parsers ----------------------------
# {c}: the canary (127.0.0.2, never allowed), {cp}: its port, {ls}: Label Studio, {a}: an allowed host
SPELLINGS = [
    "http://{c}\\@{ls}/data/upload/2/x.jpg",  # urlsplit: Label Studio; urllib3: the canary
    "http://{c}\\\\@{ls}/data/upload/2/x.jpg",
    "http://{c}\\@{a}/x.jpg",
    "hTtP://{c}\\@{ls}/data/upload/2/x.jpg",
    "https://{c}\\@{ls}/data/upload/2/x.jpg",
    "http://{ls}\\@{c}/data/upload/2/x.jpg",
    "http://{ls}@{c}/data/upload/2/x.jpg",  # userinfo
    "http://user:pass@{c}/x.jpg",
    "http://{a}@{c}/x.jpg",
    "http://{c}%5C@{ls}/data/upload/2/x.jpg",
    "http://{c}%5c@{a}/x.jpg",
    "http://{c}%40{ls}/data/upload/2/x.jpg",
    "http://{c}%2F@{ls}/data/upload/2/x.jpg",
    "http://{c}%23@{ls}/data/upload/2/x.jpg",
    "http://{c}%09@{ls}/data/upload/2/x.jpg",
    "http://{c}\t@{ls}/data/upload/2/x.jpg",  # urlsplit drops tabs and newlines
    "http://{c} @{ls}/data/upload/2/x.jpg",
    "http://{c}\n@{ls}/data/upload/2/x.jpg",
    "http://{c}\r\n@{ls}/data/upload/2/x.jpg",
    "http://{c}\x00@{ls}/data/upload/2/x.jpg",
    "http://\t{c}/x.jpg",
    "http://{c}#@{ls}/data/upload/2/x.jpg",
    "http://{c}?@{ls}/data/upload/2/x.jpg",
    "http://[::ffff:127.0.0.2]:{cp}/x.jpg",
    "http://[::ffff:127.0.0.2%25lo]:{cp}/x.jpg",  # IPv6 zone id
    "http://[::ffff:7f00:2]:{cp}/x.jpg",
    "http://2130706434:{cp}/x.jpg",  # 127.0.0.2 as one number
    "http://0x7f000002:{cp}/x.jpg",
    "http://127.2:{cp}/x.jpg",
    "http://0177.0.0.2:{cp}/x.jpg",
    "http://127.0.0.2.:{cp}/x.jpg",
    "http://127\u30020\u30020\u30022:{cp}/x.jpg",  # ideographic full stops, IDNA-mapped to dots
    "HTTP://{c}/x.jpg",
    "http://{c}/x.jpg",
    "//{c}/x.jpg",
    "http:/\\{c}/x.jpg",
    "http:\\\\{c}\\x.jpg",
]
