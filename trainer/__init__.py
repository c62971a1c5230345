"""DETR-style temporal grounding trainer (Moment-DETR, QD-DETR) with SHINE's saliency ranking."""
