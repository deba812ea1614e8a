"""The benchmark results name the processor they ran on (vendor, family, model, core)."""

from __future__ import annotations

from benchmarks.run import _cpu_label, cpu_info

# first block of /proc/cpuinfo on this project's VM (Zen 4), flags shortened
ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu sse2 avx2 avx512f avx512dq avx512vl

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: should not be read
"""


def test_cpu_info_reads_the_first_processor_and_names_the_core() -> None:
    cpu = cpu_info(ZEN4)
    assert cpu == {"name": "AMD EPYC", "vendor": "AuthenticAMD", "avx512": True,
                   "family": 25, "model": 17, "core": "Zen 4"}
    assert _cpu_label(cpu) == "AMD EPYC, Zen 4 (family 25, model 17), AVX-512"


def test_cpu_info_tells_zen_generations_apart() -> None:
    def core(family: int, model: int) -> str:
        text = f"vendor_id : AuthenticAMD\ncpu family : {family}\nmodel : {model}\nflags : avx2\n"
        return cpu_info(text)["core"]

    assert core(25, 1) == "Zen 3"  # Milan
    assert core(25, 0x11) == "Zen 4"  # Genoa
    assert core(25, 0xA0) == "Zen 4"  # Bergamo
    assert core(26, 2) == "Zen 5"  # Turin
    assert core(23, 0x31) == "Zen/Zen+/Zen 2"


def test_cpu_info_without_cpuinfo_or_for_other_vendors() -> None:
    assert cpu_info("") == {"name": "", "vendor": "", "avx512": False}
    assert _cpu_label(cpu_info("")) == ""
    intel = cpu_info("vendor_id : GenuineIntel\ncpu family : 6\nmodel : 143\n"
                     "model name : Intel Xeon\nflags : avx512f\n")
    assert "core" not in intel and intel["model"] == 143
    assert _cpu_label(intel) == "Intel Xeon (family 6, model 143), AVX-512"
