"""MLPF networks (attention, GNN-LSH), their targets and the loss.

Every model maps ``(X [B, N, F], mask [B, N])`` to ``(binary [B, N, 2], cls [B, N, C],
reg [B, N, 5])`` with ``reg`` = log(pt / pt_elem), eta, sin phi, cos phi, log(E / E_elem).
"""
