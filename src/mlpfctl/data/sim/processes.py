"""The Pythia8 process cards by name (plain data: the configuration schema reads the names).

The cards follow the MLPF production cards (HEP-KBFI/key4hep-sim ``clic/pythia``); see
docs/physics-data.md.
"""

from __future__ import annotations

_EE_COMMON = (
    "Beams:idA = 11",
    "Beams:idB = -11",
    "Beams:eCM = 380",
    "Beams:allowVertexSpread = on",
    "Beams:sigmaVertexX = 2.73e-2",
    "Beams:sigmaVertexY = 48.8E-6",
    "Beams:sigmaVertexZ = 1.33",
    "ParticleDecays:limitCylinder = on",
    "ParticleDecays:xyMax = 2250.",
    "ParticleDecays:zMax = 2500.",
)
_PP_COMMON = (
    "Beams:idA = 2212",
    "Beams:idB = 2212",
    "Beams:eCM = 14000",
    "Beams:allowVertexSpread = on",
    "Beams:sigmaVertexX = 1.5e-2",
    "Beams:sigmaVertexY = 1.5e-2",
    "Beams:sigmaVertexZ = 50.",
    "ParticleDecays:limitTau0 = on",
    "ParticleDecays:tau0Max = 10",
)
_QQ = ("23:onMode = off", "23:onIfAny = 1 2 3 4 5", "22:onMode = off", "22:onIfAny = 1 2 3 4 5")

# name -> (collider, Pythia settings, description)
PROCESSES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "ee_ttbar": ("ee", (*_EE_COMMON, "Top:ffbar2ttbar(s:gmZ) = on"), "e+e- -> ttbar at 380 GeV"),
    "ee_qq": (
        "ee",
        (*_EE_COMMON, "WeakSingleBoson:ffbar2ffbar(s:gmZ) = on", *_QQ),
        "e+e- -> qq (udscb) at 380 GeV",
    ),
    "ee_zz": ("ee", (*_EE_COMMON, "WeakDoubleBoson:ffbar2gmZgmZ = on"), "e+e- -> ZZ at 380 GeV"),
    "ee_ww": ("ee", (*_EE_COMMON, "WeakDoubleBoson:ffbar2WW = on"), "e+e- -> WW at 380 GeV"),
    "pp_ttbar": ("pp", (*_PP_COMMON, "Top:gg2ttbar = on", "Top:qqbar2ttbar = on"), "pp -> ttbar at 14 TeV"),
}
MINBIAS = (*_PP_COMMON, "SoftQCD:inelastic = on")
