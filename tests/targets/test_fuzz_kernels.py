"""A few seeds of the random-shape kernel sweep (tests/targets/fuzz_kernels.py) in every run."""
import pytest

from tests.targets.fuzz_kernels import check_seed


@pytest.mark.parametrize("target,seed", [("host", 1), ("host", 2), ("host", 5), ("cortex-m4", 3)])
def test_random_shapes_are_byte_exact(tmp_path, target, seed):
    assert check_seed(seed, target, tmp_path) == []


def test_random_single_op_models_are_byte_exact_with_tflm(tmp_path):
    from tests.targets.fuzz_kernels import check_op_models
    assert check_op_models(1, "cortex-m4", tmp_path) == []
