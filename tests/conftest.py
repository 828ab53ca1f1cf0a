from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"


def _shared(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"../shared/{name} is not present")
    return path


@pytest.fixture
def shared_data() -> Path:
    """The real image sets beside the checkout; tests using them skip where they are absent."""
    return _shared("data")


@pytest.fixture
def reference() -> Path:
    """Facts about the published checkpoint beside the checkout (key list, config)."""
    return _shared("reference")


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tiny models and small renders run faster, and reproducibly, on one thread of a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A directory holding a randomly initialised tiny model in the published layout."""
    from fast3r.model import Fast3R, Fast3RConfig

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny_weights")
    Fast3R(Fast3RConfig.tiny()).save_pretrained(directory)
    return directory
