"""Train an MLP on the digits data set over MPI, from Python; rank 0 prints the test accuracy.

    mpiexec -n 2 python examples/train_digits.py

Needs scikit-learn for the data file it ships (pip install 'mpitrain[datasets]').
"""
import mpitrain as mt

comm = mt.world()                                                # private duplicate of COMM_WORLD
train, test = mt.split(mt.load("digits", comm), comm, 0.25)      # this rank's rows, stratified 75/25
mean, scale = mt.standardize(train, comm, test)                  # global mean and variance
model = mt.create_model("mlp", train.n_features, hidden=(64,), n_classes=mt.n_classes(train, comm))
result = mt.fit(model, train, comm, mt.SGD(batch_size=32), steps=1200, lr=0.003, l2=1e-4, optimizer="adam")
_, accuracy = mt.evaluate(model, result.theta, test, comm)       # every rank gets the same value
if comm.rank == 0:
    print(f"digits MLP on {comm.size} rank(s): test accuracy {accuracy:.4f}")
