"""Lab 5 images: scikit-image's bundled photos or any file, loaded at a size, grayscale, colour
preservation, and the start images of the optimisation."""
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from common.data import package_file
from common.errors import UsageError

IMAGE_SUFFIXES = (".png", ".jpg")
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


def builtin_images() -> dict[str, Path]:
    """The images bundled with scikit-image, by name (read by path: importing skimage is not needed)."""
    folder = package_file("skimage", "data")
    if folder is None:
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix in IMAGE_SUFFIXES}


def image_path(spec: str, flag: str) -> Path:
    if spec.startswith("builtin:"):
        images = builtin_images()
        name = spec.partition(":")[2]
        if not images:
            raise UsageError(f"{flag} {spec}: builtin images come from scikit-image: pip install --no-deps "
                             f"scikit-image (make setup)")
        if name not in images:
            raise UsageError(f"{flag}: unknown builtin image {name!r}; builtin: {', '.join(images)}")
        return images[name]
    path = Path(spec)
    if not path.is_file():
        raise UsageError(f"{flag} {spec}: no such image file (or use builtin:NAME)")
    return path


def load_image(path: Path, size: tuple[int, int] | int) -> torch.Tensor:
    """(1, 3, H, W) RGB in [0, 1]; an int size is the longer side (aspect kept), a pair is (H, W)."""
    try:
        image = Image.open(path).convert("RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as error:  # the bomb: PIL's pixel cap
        raise UsageError(f"cannot read image {path}: {str(error).splitlines()[0]}") from None
    if isinstance(size, int):
        scale = size / max(image.size)
        size = (max(1, round(image.height * scale)), max(1, round(image.width * scale)))
    image = image.resize((size[1], size[0]), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1).unsqueeze(0).contiguous()


def grayscale(image: torch.Tensor) -> torch.Tensor:
    """Luminance repeated over the three channels."""
    luma = torch.tensor(LUMA, device=image.device).view(1, 3, 1, 1)
    return (image * luma).sum(1, keepdim=True).expand_as(image).contiguous()


def keep_colors(result: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The result's luminance with the content's chroma (Gatys et al. 2016, colour preservation)."""
    return (content + grayscale(result) - grayscale(content)).clamp(0, 1)


def initial_image(init: tuple[str, float], content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """noise: uniform in [0, 1]; randn: standard normal, as the report's reference drew its white noise
    (the caller clamps to [0, 1], which sets about half the pixels to 0); gray: the content's grayscale;
    blend:A: A * content + (1 - A) * style (content is blend:1)."""
    kind, share = init
    if kind == "noise":
        return torch.rand_like(content)
    if kind == "randn":
        return torch.randn_like(content)
    if kind == "gray":
        return grayscale(content)
    return share * content + (1 - share) * style


def to_numpy(image: torch.Tensor) -> np.ndarray:
    return image[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy()
