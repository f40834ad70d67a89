/* components.h — the component descriptors the registry table lists, one line each.
 * Each is defined by the file that implements it (e.g. src/diffusion/schedule.c).
 * Adding a component: one extern line here, one table line in registry.c. */
#ifndef RX_REGISTRY_COMPONENTS_H
#define RX_REGISTRY_COMPONENTS_H

#include "core/component.h"

extern const rx_component rx_comp_dataset_cifar10;
extern const rx_component rx_comp_dataset_mnist;
extern const rx_component rx_comp_dataset_fashion_mnist;
extern const rx_component rx_comp_dataset_imagefolder;
extern const rx_component rx_comp_dataset_synthetic;

extern const rx_component rx_comp_transform_resize;
extern const rx_component rx_comp_transform_center_crop;
extern const rx_component rx_comp_transform_random_crop;
extern const rx_component rx_comp_transform_random_flip;
extern const rx_component rx_comp_transform_normalize;
extern const rx_component rx_comp_transform_to_rgb;
extern const rx_component rx_comp_transform_to_gray;
extern const rx_component rx_comp_transform_pad;

extern const rx_component rx_comp_model_unet;
extern const rx_component rx_comp_model_resnet_classifier;
extern const rx_component rx_comp_model_dit;
extern const rx_component rx_comp_features_inception_fid;
extern const rx_component rx_comp_block_DiTBlock;
extern const rx_component rx_comp_block_DownBlock2D;
extern const rx_component rx_comp_block_AttnDownBlock2D;
extern const rx_component rx_comp_block_UNetMidBlock2D;
extern const rx_component rx_comp_block_UpBlock2D;
extern const rx_component rx_comp_block_AttnUpBlock2D;

extern const rx_component rx_comp_schedule_linear;
extern const rx_component rx_comp_schedule_scaled_linear;
extern const rx_component rx_comp_schedule_squaredcos_cap_v2;
extern const rx_component rx_comp_schedule_sigmoid;
extern const rx_component rx_comp_schedule_flow;

extern const rx_component rx_comp_objective_classify;
extern const rx_component rx_comp_objective_ddpm;
extern const rx_component rx_comp_objective_flow_matching;

extern const rx_component rx_comp_sampler_ddpm;
extern const rx_component rx_comp_sampler_ddim;
extern const rx_component rx_comp_sampler_dpmpp_2m;
extern const rx_component rx_comp_sampler_euler;
extern const rx_component rx_comp_sampler_euler_ancestral;
extern const rx_component rx_comp_sampler_flow_euler;
extern const rx_component rx_comp_sampler_flow_heun;
extern const rx_component rx_comp_sampler_heun;

extern const rx_component rx_comp_guidance_cfg;
extern const rx_component rx_comp_guidance_none;

extern const rx_component rx_comp_optimizer_adamw;

extern const rx_component rx_comp_lr_schedule_constant;
extern const rx_component rx_comp_lr_schedule_cosine;
extern const rx_component rx_comp_lr_schedule_linear_warmup;

extern const rx_component rx_comp_features_classifier;

extern const rx_component rx_comp_metric_class_accuracy;
extern const rx_component rx_comp_metric_classifier_score;
extern const rx_component rx_comp_metric_fd;
extern const rx_component rx_comp_metric_kid;

#endif
