"""What one chapter teaches: cropping to the head, near-duplicate audits, augmented copies,
class weights, perturbed domains, segmentation networks and losses."""
