"""Child process for the SIGKILL crash test: commit blocks to a LevelDB ledger
forever (until killed), continuing from whatever the ledger holds.

Usage: python -m tests.e2e.crash_writer DATA_DIR SEED
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from medchain.storage.ledger import Ledger
from tests.helpers import Consortium


def main() -> None:
    data_dir, seed = Path(sys.argv[1]), int(sys.argv[2])
    c = Consortium.make()
    rng = random.Random(seed)
    ledger = Ledger.open(data_dir, c.genesis)
    print("ready", ledger.height, flush=True)
    # Nonces continue past anything committed before (the (sender, nonce) pairs are unique).
    base = (ledger.height + 1) * 1000
    while True:
        txs = []
        for i in range(rng.randint(0, 40)):
            signer = c.admin_keys[i % 4]
            base += 1
            key = f"k{rng.randint(0, 200)}"
            if rng.random() < 0.2:
                txs.append(c.tx(signer, method="delete", args={"key": key}, nonce=base).encode())
            else:
                txs.append(
                    c.tx(
                        signer, args={"key": key, "value": "x" * rng.randint(1, 300)}, nonce=base
                    ).encode()
                )
        c.commit(ledger, txs)


if __name__ == "__main__":
    main()
