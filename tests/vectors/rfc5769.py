"""RFC 5769 test vectors for STUN, as hex, each under its section.

https://www.rfc-editor.org/rfc/rfc5769 — short-term credential password
``VOkJxbRl1RmTxUk/WvJxBt``; SOFTWARE and USERNAME are padded with 0x20 bytes.
"""

from __future__ import annotations

from typing import Final

from wire.address import Address

# RFC 5769 §2 (https://www.rfc-editor.org/rfc/rfc5769): credential and transaction id of all three
PASSWORD: Final = b"VOkJxbRl1RmTxUk/WvJxBt"
TRANSACTION_ID: Final = bytes.fromhex("b7e7a701bc34d686fa87dfae")

# RFC 5769 §2.1 Sample Request — https://www.rfc-editor.org/rfc/rfc5769#section-2.1
SAMPLE_REQUEST: Final = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae"
    "802200105354554e207465737420636c69656e74"  # SOFTWARE "STUN test client"
    "002400046e0001ff"  # PRIORITY
    "80290008932ff9b151263b36"  # ICE-CONTROLLED
    "000600096576746a3a68367659202020"  # USERNAME "evtj:h6vY" + 3 × 0x20
    "000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2"  # MESSAGE-INTEGRITY
    "80280004e57a3bcf"  # FINGERPRINT
)
# the parts of §2.1
REQUEST_SOFTWARE: Final = "STUN test client"
REQUEST_USERNAME: Final = "evtj:h6vY"
REQUEST_PRIORITY: Final = 0x6E0001FF
REQUEST_ICE_CONTROLLED: Final = bytes.fromhex("932ff9b151263b36")

# RFC 5769 §2.2 Sample IPv4 Response — https://www.rfc-editor.org/rfc/rfc5769#section-2.2
SAMPLE_IPV4_RESPONSE: Final = bytes.fromhex(
    "0101003c2112a442b7e7a701bc34d686fa87dfae"
    "8022000b7465737420766563746f7220"  # SOFTWARE "test vector" + 0x20
    "002000080001a147e112a643"  # XOR-MAPPED-ADDRESS 192.0.2.1:32853
    "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7"  # MESSAGE-INTEGRITY
    "80280004c07d4c96"  # FINGERPRINT
)

# RFC 5769 §2.3 Sample IPv6 Response — https://www.rfc-editor.org/rfc/rfc5769#section-2.3
SAMPLE_IPV6_RESPONSE: Final = bytes.fromhex(
    "010100482112a442b7e7a701bc34d686fa87dfae"
    "8022000b7465737420766563746f7220"  # SOFTWARE "test vector" + 0x20
    "002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9"  # XOR-MAPPED-ADDRESS
    "00080014a382954e4be67bf11784c97c8292c275bfe3ed41"  # MESSAGE-INTEGRITY
    "80280004c8fb0b4c"  # FINGERPRINT
)
# the parts of §2.2 and §2.3
RESPONSE_SOFTWARE: Final = "test vector"
IPV4_MAPPED: Final = Address("192.0.2.1", 32853)  # §2.2
IPV6_MAPPED: Final = Address("2001:db8:1234:5678:11:2233:4455:6677", 32853)  # §2.3
