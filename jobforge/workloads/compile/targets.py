"""TargetDevice and TargetPlatform: what the compiled artifact runs on, or why jobforge cannot compile for it.

Cloud instance families and ``lambda`` are where jobforge itself serves models: their artifacts are tuned
for and measured on this server's CPU (onnxruntime's full, hardware-specific graph optimisations). Other
CPUs (Graviton, edge boards, Windows, Android) get portable artifacts, verified here but not timed. NVIDIA
targets get graphs for onnxruntime's CUDA and TensorRT providers. Accelerators that need a vendor's own
compiler are refused with the name of what is missing.
"""

from __future__ import annotations

import platform
from pathlib import Path
from dataclasses import dataclass

X86_CLOUD = ("ml_c4", "ml_c5", "ml_m4", "ml_m5", "lambda")
# TargetDevice → (Os, Arch, Accelerator) for the devices jobforge compiles for.
DEVICES: dict[str, tuple[str, str, str | None]] = {
    **{name: ("LINUX", "X86_64", None) for name in X86_CLOUD},
    "ml_c6g": ("LINUX", "ARM64", None), "ml_m6g": ("LINUX", "ARM64", None),
    "ml_p2": ("LINUX", "X86_64", "NVIDIA"), "ml_p3": ("LINUX", "X86_64", "NVIDIA"),
    "ml_g4dn": ("LINUX", "X86_64", "NVIDIA"),
    "jetson_tx1": ("LINUX", "ARM64", "NVIDIA"), "jetson_tx2": ("LINUX", "ARM64", "NVIDIA"),
    "jetson_nano": ("LINUX", "ARM64", "NVIDIA"), "jetson_xavier": ("LINUX", "ARM64", "NVIDIA"),
    "rasp3b": ("LINUX", "ARM_EABIHF", None), "rasp4b": ("LINUX", "ARM64", None),
    "imx8qm": ("LINUX", "ARM64", None), "rk3399": ("LINUX", "ARM64", None), "rk3288": ("LINUX", "ARM_EABIHF", None),
    "sbe_c": ("LINUX", "X86_64", None), "deeplens": ("LINUX", "X86_64", "INTEL_GRAPHICS"),
    "x86_win32": ("WINDOWS", "X86", None), "x86_win64": ("WINDOWS", "X86_64", None),
}
NEURON = "it needs the AWS Neuron compiler (neuronx-cc), which is not available outside AWS Neuron instances"
REFUSED_DEVICES = {
    "ml_inf1": NEURON, "ml_inf2": NEURON, "ml_trn1": NEURON,
    "ml_eia2": "Amazon Elastic Inference accelerators are discontinued and no runtime for them exists",
    "coreml": "it needs coremltools to convert and macOS to load and verify the model",
    "qcs605": "it needs Qualcomm's SNPE/QNN SDK for the Hexagon DSP, which is not available here",
    "qcs603": "it needs Qualcomm's SNPE/QNN SDK for the Hexagon DSP, which is not available here",
    "amba_cv2": "it needs Ambarella's CVflow toolchain, which is not available here",
    "amba_cv22": "it needs Ambarella's CVflow toolchain, which is not available here",
    "amba_cv25": "it needs Ambarella's CVflow toolchain, which is not available here",
    "sitara_am57x": "it needs TI's TIDL toolchain, which is not available here",
    "jacinto_tda4vm": "it needs TI's TIDL toolchain, which is not available here",
    "imx8mplus": "it needs NXP's eIQ toolchain for the i.MX 8M Plus NPU, which is not available here",
    "aisage": "it needs the aiSage board's vendor toolchain, which is not available here",
}
REFUSED_ACCELERATORS = {
    "MALI": "it needs the Arm Compute Library / Mali GPU toolchain, which is not available here",
    "NNA": "it needs the vendor's neural-network-accelerator toolchain, which is not available here",
}
HOST_ARCH = {"x86_64": "X86_64", "amd64": "X86_64", "aarch64": "ARM64", "arm64": "ARM64"}


class TargetRefused(ValueError):
    """A target jobforge cannot compile for; the message says why."""


@dataclass(frozen=True)
class Target:
    name: str  # as in the artifact's name: the TargetDevice, or os_arch[_accelerator] in lower case
    os: str
    arch: str
    accelerator: str | None
    served_here: bool  # jobforge runs such artifacts on this server: tune for and measure on its CPU

    @property
    def cpu(self) -> bool:
        return self.accelerator is None

    def runs_on_host(self) -> bool:
        """Whether this host can run the artifact as the target would (and so measure it)."""
        return self.cpu and self.os == "LINUX" and self.arch == host_arch()

    def to_json(self) -> dict:
        return {"name": self.name, "os": self.os, "arch": self.arch, "accelerator": self.accelerator,
                "served_here": self.served_here}

    @classmethod
    def from_json(cls, data: dict) -> "Target":
        return cls(data["name"], data["os"], data["arch"], data["accelerator"], data["served_here"])


def host_arch() -> str:
    return HOST_ARCH.get(platform.machine().lower(), platform.machine().upper())


def resolve(output_config: dict) -> Target:
    """The target OutputConfig names (exactly one of TargetDevice and TargetPlatform), or TargetRefused."""
    device, target_platform = output_config.get("TargetDevice"), output_config.get("TargetPlatform")
    if (device is None) == (target_platform is None):
        raise TargetRefused("OutputConfig needs exactly one of TargetDevice and TargetPlatform.")
    if device is not None:
        if device in REFUSED_DEVICES:
            raise TargetRefused(f"TargetDevice {device} is not supported by jobforge: {REFUSED_DEVICES[device]}.")
        os_name, arch, accelerator = DEVICES[device]
        served = device in X86_CLOUD and host_arch() == "X86_64"
        return Target(device, os_name, arch, accelerator, served)
    os_name, arch = target_platform["Os"], target_platform["Arch"]
    accelerator = target_platform.get("Accelerator")
    if accelerator in REFUSED_ACCELERATORS:
        raise TargetRefused(f"TargetPlatform accelerator {accelerator} is not supported by jobforge: "
                            f"{REFUSED_ACCELERATORS[accelerator]}.")
    if accelerator == "NVIDIA" and arch not in ("X86_64", "ARM64"):
        raise TargetRefused(f"TargetPlatform {arch} with NVIDIA: NVIDIA GPUs are paired with X86_64 or ARM64 hosts.")
    if accelerator == "INTEL_GRAPHICS" and arch not in ("X86_64", "X86"):
        raise TargetRefused(f"TargetPlatform {arch} with INTEL_GRAPHICS: Intel graphics are paired with x86 hosts.")
    name = "_".join(part.lower() for part in (os_name, arch, accelerator) if part)
    served = os_name == "LINUX" and accelerator is None and arch == host_arch()
    return Target(name, os_name, arch, accelerator, served)


def missing_cpu_features(mattr: tuple[str, ...]) -> list[str]:
    """The features ``mattr`` asks for (``+avx512f``, ``+neon``, …) that this host's CPU lacks."""
    wanted = [flag[1:].lower().replace(".", "_") for flag in mattr if flag.startswith("+")]
    if not wanted:
        return []
    try:
        flags = {word for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith(("flags", "Features")) for word in line.split(":", 1)[1].split()}
    except OSError:
        return wanted
    return [flag for flag in wanted if flag not in flags]


def host_tuned(target: Target, mattr: tuple[str, ...]) -> bool:
    """Whether the artifact is tuned for, and timed on, this host's CPU."""
    return target.served_here and target.runs_on_host() and not missing_cpu_features(mattr)
