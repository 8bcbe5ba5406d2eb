"""Reference values for Easel's schedulers, computed by diffusers' own scheduler code.

Usage (needs Debian's python3-torch and python3-numpy, and a checkout of diffusers):

    /usr/bin/python3 tools/reference/diffusers_scheduler_fixtures.py \
        --diffusers /path/to/diffusers --out test/fixtures/schedulers/diffusers.json

diffusers' package __init__ pulls in huggingface_hub, transformers and more, none of which
this machine has. So this script builds a throwaway package named `diffusers` in a temporary
directory that holds the six scheduler modules *copied unmodified* from the checkout, next to
small stand-ins for the helpers they import (ConfigMixin/register_to_config, BaseOutput,
randn_tensor, SchedulerMixin). The stand-ins hold no numerics: every number below comes from
the scheduler files themselves. Nothing from diffusers is committed to Easel, only the output.

For each (config, scheduler, timestep_spacing, step count) the fixture records the timesteps,
the sigmas (for sigma-based schedulers), init_noise_sigma, and for every step: the timestep,
the UNet input (scale_model_input), and the scheduler's output for fixed inputs. The model
outputs and the noise of the stochastic schedulers come from a seeded numpy generator and are
stored in the fixture, so Easel's test feeds them in the same order.
"""

import argparse
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np

SCHEDULER_FILES = {
    "ddim": ("scheduling_ddim", "DDIMScheduler"),
    "euler": ("scheduling_euler_discrete", "EulerDiscreteScheduler"),
    "euler_a": ("scheduling_euler_ancestral_discrete", "EulerAncestralDiscreteScheduler"),
    "dpmpp_2m": ("scheduling_dpmsolver_multistep", "DPMSolverMultistepScheduler"),
    "lcm": ("scheduling_lcm", "LCMScheduler"),
    "pndm": ("scheduling_pndm", "PNDMScheduler"),
}

STANDINS = {
    "__init__.py": "",
    "configuration_utils.py": '''
import functools, inspect, types

class ConfigMixin:
    def register_to_config(self, **kwargs):
        for key, value in kwargs.items():
            setattr(self.config, key, value)

def register_to_config(init):
    signature = inspect.signature(init)
    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        params = dict(bound.arguments)
        params.pop("self")
        self.config = types.SimpleNamespace(**params)
        init(self, *args, **kwargs)
    return wrapper
''',
    "utils/__init__.py": '''
import logging as _logging

class BaseOutput:
    pass

def deprecate(*args, **kwargs):
    return None

def is_scipy_available():
    return False

class logging:
    @staticmethod
    def get_logger(name):
        return _logging.getLogger(name)
''',
    "utils/torch_utils.py": '''
import torch

NOISE = []

def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None):
    """Hands out the fixture's pre-drawn noise, in order."""
    return NOISE.pop(0).reshape(shape).to(dtype or torch.float32)
''',
    "schedulers/__init__.py": "",
    "schedulers/scheduling_utils.py": '''
from dataclasses import dataclass
from enum import Enum
import torch
from ..utils import BaseOutput

class KarrasDiffusionSchedulers(Enum):
    DDIMScheduler = 1
    PNDMScheduler = 3
    EulerDiscreteScheduler = 5
    EulerAncestralDiscreteScheduler = 7
    DPMSolverMultistepScheduler = 8

@dataclass
class SchedulerOutput(BaseOutput):
    prev_sample: torch.Tensor

class SchedulerMixin:
    order = 1
''',
}

SD15 = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "clip_sample": False,
    "skip_prk_steps": True,
}
CONFIGS = {
    # Stable Diffusion 1.5's scheduler_config.json (a PNDMScheduler), used by every scheduler.
    "sd15": (SD15, ["ddim", "euler", "euler_a", "dpmpp_2m", "lcm", "pndm"]),
    # Stable Diffusion 2.1 (768): the same betas, v-prediction.
    "sd21_v": ({**SD15, "prediction_type": "v_prediction"}, ["ddim", "euler", "euler_a", "dpmpp_2m", "pndm"]),
    # DDPM-style linear betas with clipping and alpha_to_one.
    "linear_clip": (
        {
            "num_train_timesteps": 1000,
            "beta_start": 0.0001,
            "beta_end": 0.02,
            "beta_schedule": "linear",
            "prediction_type": "epsilon",
            "set_alpha_to_one": True,
            "steps_offset": 0,
            "clip_sample": True,
            "skip_prk_steps": True,
        },
        ["ddim", "euler", "pndm"],
    ),
    "cosine": (
        {
            "num_train_timesteps": 1000,
            "beta_schedule": "squaredcos_cap_v2",
            "prediction_type": "epsilon",
            "set_alpha_to_one": False,
            "steps_offset": 1,
            "clip_sample": False,
            "skip_prk_steps": True,
        },
        ["ddim", "euler", "dpmpp_2m"],  # euler_a: float32 sqrt of a rounding-negative at sigma 2e4 gives NaN in diffusers
    ),
    # An LCM-distilled SD 1.5 (LCM Dreamshaper v7's scheduler_config.json).
    "lcm": (
        {
            "num_train_timesteps": 1000,
            "beta_start": 0.00085,
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "prediction_type": "epsilon",
            "set_alpha_to_one": True,
            "steps_offset": 1,
            "clip_sample": False,
            "original_inference_steps": 50,
            "timestep_scaling": 10.0,
        },
        ["lcm", "ddim", "euler"],
    ),
}
SPACINGS = ["leading", "trailing", "linspace"]
STEP_COUNTS = [4, 16]
SAMPLE_SHAPE = (1, 4, 1, 2)
MAX_CALLS = 17  # PNDM makes one more UNet call than it has steps


def build_package(diffusers_root: pathlib.Path, into: pathlib.Path) -> None:
    package = into / "diffusers"
    for name, text in STANDINS.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for module, _ in SCHEDULER_FILES.values():
        shutil.copy(diffusers_root / "src/diffusers/schedulers" / f"{module}.py", package / "schedulers")


def accepted(cls, config: dict) -> dict:
    import inspect

    names = inspect.signature(cls.__init__).parameters
    return {key: value for key, value in config.items() if key in names}


def as_list(values) -> list:
    return [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]


def run_case(cls, config, spacing, steps, model_outputs, noise, initial):
    import torch
    from diffusers.utils import torch_utils

    scheduler = cls(**accepted(cls, {**config, "timestep_spacing": spacing}))
    scheduler.set_timesteps(steps)
    torch_utils.NOISE[:] = [torch.tensor(n) for n in noise]
    init_sigma = float(scheduler.init_noise_sigma)
    sample = torch.tensor(initial) * init_sigma
    record = {
        "timesteps": as_list(scheduler.timesteps),
        "init_noise_sigma": init_sigma,
        "initial_sample": as_list(sample),
        "steps": [],
    }
    if hasattr(scheduler, "sigmas") and getattr(scheduler, "num_inference_steps", None):
        record["sigmas"] = as_list(scheduler.sigmas)
    for index, t in enumerate(scheduler.timesteps):
        model_input = scheduler.scale_model_input(sample, t)
        noise_before = len(torch_utils.NOISE)
        output = scheduler.step(torch.tensor(model_outputs[index]), t, sample)
        sample = output.prev_sample
        record["steps"].append(
            {
                "timestep": float(t),
                "model_input": as_list(model_input),
                "prev_sample": as_list(sample),
                "noise_used": noise_before - len(torch_utils.NOISE),
            }
        )
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diffusers", required=True, type=pathlib.Path, help="a diffusers checkout")
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--revision", help="the checkout's commit, when it is not a git work tree")
    args = parser.parse_args()

    commit = args.revision or subprocess.run(
        ["git", "-C", str(args.diffusers), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        build_package(args.diffusers, pathlib.Path(tmp))
        sys.path.insert(0, tmp)
        import importlib

        import torch

        rng = np.random.default_rng(20261123)
        size = int(np.prod(SAMPLE_SHAPE))
        model_outputs = rng.standard_normal((MAX_CALLS, size)).astype(np.float32).reshape(MAX_CALLS, *SAMPLE_SHAPE)
        noise = rng.standard_normal((MAX_CALLS, size)).astype(np.float32).reshape(MAX_CALLS, *SAMPLE_SHAPE)
        initial = rng.standard_normal(size).astype(np.float32).reshape(SAMPLE_SHAPE)

        cases = []
        for config_name, (config, schedulers) in CONFIGS.items():
            for scheduler_name in schedulers:
                module, class_name = SCHEDULER_FILES[scheduler_name]
                cls = getattr(importlib.import_module(f"diffusers.schedulers.{module}"), class_name)
                for spacing in SPACINGS:
                    for steps in STEP_COUNTS:
                        record = run_case(cls, config, spacing, steps, model_outputs, noise, initial)
                        cases.append(
                            {
                                "config_name": config_name,
                                "config": {**config, "timestep_spacing": spacing},
                                "scheduler": scheduler_name,
                                "num_inference_steps": steps,
                                **record,
                            }
                        )

    fixture = {
        "source": f"huggingface/diffusers@{commit} src/diffusers/schedulers, torch {torch.__version__}",
        "generated_by": "tools/reference/diffusers_scheduler_fixtures.py",
        "sample_shape": list(SAMPLE_SHAPE),
        "model_outputs": [as_list(m) for m in model_outputs],
        "noise": [as_list(n) for n in noise],
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(fixture, separators=(",", ":"), default=lambda v: float(v))
    args.out.write_text(text + "\n")
    print(f"{len(cases)} cases -> {args.out} ({len(text) // 1024} KiB)")


if __name__ == "__main__":
    main()
