import torch, numpy as np
import sys, types, importlib.util
base='/tmp/torchenv2/lib/python3.11/site-packages/lucent/modelzoo/inceptionv1/'
for n in ['lucent','lucent.modelzoo','lucent.modelzoo.inceptionv1']:
  sys.modules[n]=types.ModuleType(n)
def load(name, f):
  spec=importlib.util.spec_from_file_location(name, base+f); mod=importlib.util.module_from_spec(spec); sys.modules[name]=mod; spec.loader.exec_module(mod); return mod
hl=load('lucent.modelzoo.inceptionv1.helper_layers','helper_layers.py'); sys.modules['lucent.modelzoo.inceptionv1'].helper_layers=hl
InceptionV1=load('lucent.modelzoo.inceptionv1.InceptionV1','InceptionV1.py').InceptionV1
torch.manual_seed(0)
m = InceptionV1(pretrained=False, redirected_ReLU=False).eval()
with torch.no_grad():
  for p in m.parameters(): p.mul_(1.0)
x = np.random.default_rng(0).uniform(size=(2,224,224,3)).astype(np.float32)
acts = {}
for name in ["conv2d0","conv2d1","conv2d2","mixed3a","mixed4a","mixed5b","softmax2_pre_activation_matmul"]:
  getattr(m, name).register_forward_hook(lambda mod, i, o, name=name: acts.__setitem__(name, o.detach().numpy()))
with torch.no_grad():
  m(torch.from_numpy(x*255-117).permute(0,3,1,2))
torch.save(m.state_dict(), "/tmp/lucent_random.pth")
np.savez("/tmp/lucent_ref.npz", x=x, **acts)
print({k: v.shape for k, v in acts.items()})
