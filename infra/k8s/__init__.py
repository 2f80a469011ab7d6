"""The Kubernetes side of the program: platform services and workloads as ComponentResources."""
