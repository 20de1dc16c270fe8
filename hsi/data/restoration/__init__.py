"""Restoration data: clean cubes scaled to [0, 1], degraded on the fly, evaluated leak-free.

Data flows one way: clean cube(s) (registry or files) -> held-out split (regions of one
scene, or whole scenes) -> scaling fitted on the training part only -> training crops drawn
at random inside the training part, degraded with a generator seeded by (seed, epoch, index)
-> validation/test images made once per run from the held-out parts, with noise seeded by
(seed, part, index) so every epoch and every run sees the same degraded inputs. With
``test_degradations`` (e.g. QRNN3D's ICVL noise cases 1-5) the test images are made once per
listed degradation, each case with its own fixed noise, so one ``hsi test`` reports them all.

**Held-out regions** (``holdout="regions"``): each scene is cut into vertical strips along
its width: the left ``1 - val_fraction - test_fraction`` for training, then a validation
strip, then the test strip at the right edge. Training crops lie wholly inside the training
strip, so no evaluated pixel was ever part of a training crop (the tests check this).
**Held-out scenes** (``holdout="scenes"``): the ``dataset``/``image`` scenes train, the
``val_images``/``test_images`` scenes are evaluated whole.
**A scene collection** (``holdout="collection"``, e.g. ICVL's 201 scenes): the card's
``test_scenes`` list named by ``test_list`` is the test set, every scene on none of the card's
test lists trains except ``val_scenes`` of them drawn with ``seed`` for validation. Scenes are
read on demand and never all held: training crops come from an LRU cache of ``cache_scenes``
scenes, visited group by group (see :mod:`~hsi.data.restoration.collection`).

**Scaling** to ``[0, 1]``, fitted on the training part only (the papers use the data's
minimum and maximum, e.g. QRNN3D's ``minmax_normalize`` of each ICVL cube):

- ``minmax`` (default): ``(x - min) / (max - min)`` with one global min and max over all
  training pixels and bands (QRNN3D/HSDT's per-cube min-max, fitted on training data).
- ``minmax_band``: the same per band (each band stretched to [0, 1]).
- ``minmax_scene`` (collections only): every cube by its own min and max: each training
  scene whole, each validation/test image after its centre crop. This is what QRNN3D/HSDT do
  to ICVL (``minmax_normalize`` of each training scene before cropping; ``normalized`` of each
  512 x 512 test crop), and it uses no value of one scene to scale another, so nothing crosses
  the split. A checkpoint stores only the rule: a new scene is scaled by its own min and max.
- ``none``: the data are already in [0, 1] (checked).

Held-out pixels outside the training range map slightly outside [0, 1]; they are kept
(not clipped), so the reference is exactly the scaled data.
"""

from hsi.data.restoration.collection import GroupedEpochSampler
from hsi.data.restoration.crops import EpochSampler
from hsi.data.restoration.datamodule import RestorationDataModule
from hsi.data.restoration.regions import Region, regions_overlap
from hsi.data.restoration.scaling import Scaling
from hsi.data.restoration.sources import load_clean_cube

__all__ = [
    "EpochSampler",
    "GroupedEpochSampler",
    "Region",
    "RestorationDataModule",
    "Scaling",
    "load_clean_cube",
    "regions_overlap",
]
