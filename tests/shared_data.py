"""Where the tests find the real CIFAR-10 subset: ../shared/data beside the checkout, or the
folder named by $MINIRES_TEST_DATA (a GPU machine gets a copy inside the checkout)."""
import os
from pathlib import Path

SHARED_DATA = Path(os.environ.get("MINIRES_TEST_DATA")
                   or Path(__file__).resolve().parents[2] / "shared" / "data")
