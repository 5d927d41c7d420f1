"""Shared definitions of metastatic burden used by several instruments.

Clinical-reference §4.3, §5.4, §6.2, §8.4 and §18.22:

* **Solitary** means exactly one skeletal metastasis in total, spine included.
  Whether one contiguous lesion over several vertebrae counts as solitary
  ("isolated" in Tomita) is undefined, so both answers are possible.
* **Visceral / organ metastases**: brain counts as an organ metastasis for
  Tomita, Tokuhashi, Bauer and Katagiri.  The primary organ itself (the liver
  in HCC) is not a metastasis; that is for the person recording the input.

Each function returns the *set* of possible answers, empty when the inputs do
not allow an answer at all.
"""

from __future__ import annotations

from surveillance.scoring.vocab import VisceralStatus


def solitary_possibilities(
    extraspinal: int | None,
    vertebral: int | None,
    single_contiguous: bool | None,
) -> frozenset[bool]:
    """Whether the patient has a solitary skeletal metastasis: {True}, {False} or both.

    Empty when either count is unknown: the §16 matrix makes the systems that
    need the counts "cannot compute" rather than guessing a burden.
    """
    if extraspinal is None or vertebral is None:
        return frozenset()
    if extraspinal > 0:
        return frozenset({False})
    if vertebral == 1:
        return frozenset({True})
    # Several vertebral bodies and nothing outside the spine: solitary only if
    # they are one contiguous lesion *and* such a lesion counts as solitary.
    if single_contiguous is False:
        return frozenset({False})
    return frozenset({True, False})


def organ_metastasis_states(status: VisceralStatus | None, brain: bool | None) -> frozenset[str]:
    """Possible states of visceral/organ metastasis: subsets of {"none", "nodular", "disseminated", "brain"}.

    Each element is one possible world, written as the worst finding present
    for Katagiri (brain and nodular both score 1) and as presence for the others.
    """
    statuses = [status] if status is not None else list(VisceralStatus)
    brains = [brain] if brain is not None else [False, True]
    worlds = set()
    for s in statuses:
        for b in brains:
            if s == VisceralStatus.DISSEMINATED:
                worlds.add("disseminated")
            elif s == VisceralStatus.NODULAR:
                worlds.add("nodular")
            elif b:
                worlds.add("brain")
            else:
                worlds.add("none")
    return frozenset(worlds)


def organ_metastasis_present(status: VisceralStatus | None, brain: bool | None) -> frozenset[bool]:
    """Whether any visceral or brain metastasis is present: {True}, {False} or both."""
    return frozenset(world != "none" for world in organ_metastasis_states(status, brain))
